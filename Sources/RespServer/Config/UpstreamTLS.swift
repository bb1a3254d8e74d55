import Reactor

/// Builds the process's one TLS context for the upstream from the `upstream-tls-*` settings,
/// once at start, so that a missing or unreadable CA, certificate or key is a configuration
/// error then rather than a failure of every client later.
enum UpstreamTLS {
    /// Sets `config.upstreamTLS` when the upstream is `rediss://`; returns what to warn about.
    static func prepare(_ config: inout Config) throws -> [String] {
        var warnings: [String] = []
        let set = [("upstream-tls-ca-cert-file", config.upstreamTLSCaCertFile),
                   ("upstream-tls-ca-cert-dir", config.upstreamTLSCaCertDir),
                   ("upstream-tls-cert-file", config.upstreamTLSCertFile),
                   ("upstream-tls-key-file", config.upstreamTLSKeyFile),
                   ("upstream-tls-server-name", config.upstreamTLSServerName),
                   ("upstream-tls-insecure", config.upstreamTLSInsecure ? "yes" : "")].filter { !$0.1.isEmpty }
        guard config.upstream.tls else {
            if !set.isEmpty {
                warnings.append("\(set.map { $0.0 }.joined(separator: ", ")) set but the upstream is plain TCP "
                                + "(\(config.upstream)): ignored; use rediss:// (or REDIS_SSL=true) for TLS")
            }
            return warnings
        }
        let name = config.upstreamTLSServerName.isEmpty ? config.upstream.host : config.upstreamTLSServerName
        do {
            config.upstreamTLS = try TLSClient(serverName: name, caFile: config.upstreamTLSCaCertFile,
                                               caDir: config.upstreamTLSCaCertDir,
                                               certFile: config.upstreamTLSCertFile,
                                               keyFile: config.upstreamTLSKeyFile,
                                               verifyPeer: !config.upstreamTLSInsecure)
            try config.upstreamTLS?.validate()
        } catch {
            throw ConfigError("upstream \(config.upstream): \(error)")
        }
        if config.upstreamTLSInsecure {
            warnings.append("upstream-tls-insecure yes: the upstream's TLS certificate is NOT verified; "
                            + "anyone on the path can impersonate it. For development only.")
        }
        return warnings
    }

    /// How the upstream is reached, for the start line and the startup check.
    static func describe(_ config: Config) -> String {
        guard let tls = config.upstreamTLS else { return "plain TCP" }
        if !tls.verifiesPeer { return "TLS, certificate not verified" }
        let trust = [config.upstreamTLSCaCertFile, config.upstreamTLSCaCertDir].filter { !$0.isEmpty }
        return "TLS, certificate verified for \(tls.serverName) against "
            + (trust.isEmpty ? "the system CA store" : trust.joined(separator: ", "))
            + (config.upstreamTLSCertFile.isEmpty ? "" : ", client certificate \(config.upstreamTLSCertFile)")
    }
}
