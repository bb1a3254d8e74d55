import Reactor

/// TLS for clients, with Redis's own directives, defaults and meanings (redis.conf's TLS
/// section): the same conf lines work in front of tierproxy as in front of Redis.
let clientTLSDirectives: [Directive] = [
    Directive(name: "tls-port", defaultArgs: "0", doc: [
        "TLS for clients, as Redis's tls-port: a port that speaks only TLS, beside 'port' (plain TCP) or",
        "instead of it ('port 0'). 0 = no TLS listener; the tls-* lines below apply only when set.",
    ]) { c, a in c.tlsPort = try Units.int(try one(a, "tls-port"), 0...65535) },
    text("tls-cert-file", \.tlsSettings.certFile, [
        "The proxy's certificate (PEM, chain allowed) shown to clients on tls-port. Re-read on SIGHUP:",
        "new handshakes get the new certificate, connected clients keep theirs; a file that does not",
        "load then is logged and the old certificate stays.",
    ]),
    text("tls-key-file", \.tlsSettings.keyFile, [
        "Private key (PEM) of tls-cert-file; re-read on SIGHUP with it.",
    ]),
    text("tls-key-file-pass", \.tlsSettings.keyFilePass, [
        "Passphrase of an encrypted tls-key-file (never logged or printed).",
    ]),
    text("tls-ca-cert-file", \.tlsSettings.caCertFile, [
        "PEM file of the CA certificates client certificates must chain to (tls-auth-clients yes or",
        "optional need it or tls-ca-cert-dir). Re-read on SIGHUP.",
    ]),
    text("tls-ca-cert-dir", \.tlsSettings.caCertDir, [
        "Directory of trusted CA certificates for client certificates (c_rehash / openssl rehash layout).",
    ]),
    Directive(name: "tls-auth-clients", defaultArgs: "yes", doc: [
        "yes: a client must present a certificate signed by a trusted CA (Redis's default); optional: a",
        "certificate, if sent, must be valid; no: none is asked for.",
    ]) { c, a in
        guard let auth = TLSServer.ClientAuth(rawValue: try one(a, "tls-auth-clients").lowercased()) else {
            throw ConfigError("argument(s) must be one of the following: no, yes, optional")
        }
        c.tlsSettings.authClients = auth
    },
    Directive(name: "tls-protocols", defaultArgs: "\"TLSv1.2 TLSv1.3\"", doc: [
        "The TLS versions clients may use, any of TLSv1, TLSv1.1, TLSv1.2 and TLSv1.3.",
    ]) { c, a in c.tlsSettings.protocols = try parseProtocols(a) },
    text("tls-ciphers", \.tlsSettings.ciphers, [
        "Cipher list for TLSv1.2 and below (OpenSSL's syntax, see ciphers(1)); empty = OpenSSL's default.",
    ]),
    text("tls-ciphersuites", \.tlsSettings.ciphersuites, [
        "TLSv1.3 cipher suites, colon-separated (e.g. TLS_CHACHA20_POLY1305_SHA256); empty = OpenSSL's default.",
    ]),
    Directive(name: "tls-prefer-server-ciphers", defaultArgs: "no", doc: [
        "yes: the proxy's cipher order wins over the client's.",
    ]) { c, a in c.tlsSettings.preferServerCiphers = try Units.bool(try one(a, "tls-prefer-server-ciphers")) },
    Directive(name: "tls-session-caching", defaultArgs: "yes", doc: [
        "Cache TLS sessions so that reconnecting clients resume them (a cheaper handshake); no: no",
        "resumption at all (no cache, no session tickets), every client gets a full handshake.",
    ]) { c, a in c.tlsSettings.sessionCaching = try Units.bool(try one(a, "tls-session-caching")) },
    Directive(name: "tls-session-cache-size", defaultArgs: "20480", doc: [
        "Most TLS sessions cached; 0 = no limit.",
    ]) { c, a in c.tlsSettings.sessionCacheSize = try Units.int(try one(a, "tls-session-cache-size"), 0...Int(Int32.max)) },
    Directive(name: "tls-session-cache-timeout", defaultArgs: "300", doc: [
        "Seconds a cached TLS session may be resumed.",
    ]) { c, a in c.tlsSettings.sessionCacheTimeout = try Units.int(try one(a, "tls-session-cache-timeout"), 0...Int(Int32.max)) },
    Directive(name: "tls-handshake-timeout", defaultArgs: "10000", doc: [
        "Milliseconds a client on tls-port has to finish its TLS handshake; one that has not is closed",
        "(logged as a failed accept), so connections that never complete one hold no socket. 0 = no",
        "limit. (Not a Redis directive: Redis has no such limit.)",
    ]) { c, a in c.tlsSettings.handshakeTimeoutMillis = try Units.int(try one(a, "tls-handshake-timeout"), 0...3_600_000) },
]

/// tls-protocols as Redis reads it: words separated by spaces (one quoted argument or several),
/// any case; anything else is refused with Redis's words.
private func parseProtocols(_ args: [String]) throws -> Set<String> {
    let words = args.joined(separator: " ").split(separator: " ").map { $0.lowercased() }
    let known: Set<String> = ["tlsv1", "tlsv1.1", "tlsv1.2", "tlsv1.3"]
    guard !words.isEmpty, words.allSatisfy(known.contains) else {
        throw ConfigError("Invalid tls-protocols specified. Use a combination of 'TLSv1', 'TLSv1.1', 'TLSv1.2' and 'TLSv1.3'.")
    }
    return Set(words)
}

/// Builds the clients' TLS context at start (a certificate, key or CA that does not load stops
/// the start, as in Redis) and again on SIGHUP.
enum ClientTLS {
    /// Sets `config.clientTLS` when `tls-port` is set.
    static func prepare(_ config: inout Config) throws {
        guard config.tlsPort != 0 else { return }
        if config.tlsPort == config.port { throw ConfigError("tls-port \(config.tlsPort) is also 'port': use two ports") }
        do {
            config.clientTLS = try TLSServer(settings: config.tlsSettings)
        } catch {
            throw ConfigError("Failed to configure TLS: \(error)")
        }
    }

}
