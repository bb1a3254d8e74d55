import Testing
@testable import RespServer
import Reactor

/// Redis's tls-* directives: their defaults, spellings and refusals, and the rename of the
/// lower tiers' HTTPS CA bundle to tier-tls-ca-cert-file.
@Suite struct ClientTLSConfigTests {
    @Test func defaultsAreRedis() throws {
        let c = try ConfigLoader(arguments: []).load(environment: [:])
        #expect(c.tlsPort == 0)
        #expect(c.tlsSettings == TLSServer.Settings())
        #expect(c.tlsSettings.authClients == .yes)
        #expect(c.tlsSettings.protocols == ["tlsv1.2", "tlsv1.3"])
        #expect(c.tlsSettings.sessionCaching && c.tlsSettings.sessionCacheSize == 20480 && c.tlsSettings.sessionCacheTimeout == 300)
        #expect(c.tlsSettings.handshakeTimeoutMillis == 10_000)
        let quick = try ConfigLoader(arguments: ["--tls-handshake-timeout", "250"]).load(environment: [:])
        #expect(quick.tlsSettings.handshakeTimeoutMillis == 250)
        var none = c
        try ClientTLS.prepare(&none)        // no tls-port: nothing is loaded, nothing is required
        #expect(none.clientTLS == nil)
    }

    @Test func directivesFromFlagsAndEnv() throws {
        let c = try ConfigLoader(arguments: ["--tls-port", "6390", "--tls-auth-clients", "OPTIONAL",
                                             "--tls-protocols", "TLSv1.3", "--tls-prefer-server-ciphers", "yes",
                                             "--tls-session-caching", "no"])
            .load(environment: ["TIERPROXY_TLS_PROTOCOLS": "TLSv1.2 TLSv1.3", "TIERPROXY_TLS_CIPHERSUITES": "TLS_AES_128_GCM_SHA256",
                                "TIERPROXY_TLS_KEY_FILE_PASS": "pw"])
        #expect(c.tlsPort == 6390 && c.tlsSettings.authClients == .optional)
        #expect(c.tlsSettings.protocols == ["tlsv1.3"])      // the flag beats the env var
        #expect(c.tlsSettings.ciphersuites == "TLS_AES_128_GCM_SHA256" && c.tlsSettings.keyFilePass == "pw")
        #expect(c.tlsSettings.preferServerCiphers && !c.tlsSettings.sessionCaching)
        let twoWords = try ConfigLoader(arguments: []).load(environment: ["TIERPROXY_TLS_PROTOCOLS": "tlsv1 TLSv1.1"])
        #expect(twoWords.tlsSettings.protocols == ["tlsv1", "tlsv1.1"])
    }

    @Test func refusalsInRedisWords() throws {
        func error(_ args: [String]) -> String {
            do {
                var c = try ConfigLoader(arguments: args).load(environment: [:])
                try ClientTLS.prepare(&c)
                return ""
            } catch { return "\(error)" }
        }
        #expect(error(["--tls-protocols", "TLSv1.2 SSLv3"]).contains("Invalid tls-protocols specified"))
        #expect(error(["--tls-auth-clients", "sometimes"]).contains("no, yes, optional"))
        #expect(error(["--tls-port", "6390"]).contains("No tls-cert-file configured!"))
        #expect(error(["--tls-port", "6390", "--tls-cert-file", "/x.crt"]).contains("No tls-key-file configured!"))
        #expect(error(["--tls-port", "6390", "--tls-cert-file", "/x.crt", "--tls-key-file", "/x.key"])
            .contains("Either tls-ca-cert-file or tls-ca-cert-dir must be specified"))
        #expect(error(["--tls-port", "6390", "--tls-cert-file", "/nonexistent.crt", "--tls-key-file", "/x.key",
                       "--tls-auth-clients", "no"]).contains("Failed to configure TLS: Failed to load certificate: /nonexistent.crt"))
        #expect(error(["--tls-port", "6380", "--port", "6380"]).contains("use two ports"))
    }

    @Test func tierCABundleIsRenamed() throws {
        let c = try ConfigLoader(arguments: ["--tier-tls-ca-cert-file", "/tiers.pem", "--tls-ca-cert-file", "/clients.pem"])
            .load(environment: [:])
        #expect(c.tierTLSCaCertFile == "/tiers.pem" && c.tlsSettings.caCertFile == "/clients.pem")
        let env = try ConfigLoader(arguments: []).load(environment: ["TIERPROXY_TIER_TLS_CA_CERT_FILE": "/t.pem"])
        #expect(env.tierTLSCaCertFile == "/t.pem" && env.tlsSettings.caCertFile == "")
    }
}
