import COpenSSL
import Glibc

/// Server-side TLS for accepted client connections, set up as Redis's `tls.c` sets up its own:
/// one `SSL_CTX` built from the `tls-*` settings, shared by every loop. A reload builds a new
/// one; connections already accepted keep the context their `SSL` was made from (OpenSSL
/// counts the references), so replacing it never disturbs them.
public final class TLSServer {
    /// Redis's `tls-auth-clients`.
    public enum ClientAuth: String, Sendable {
        case yes, no, optional
    }

    /// What the context is built from: Redis's directives, one field each.
    public struct Settings: Sendable, Equatable {
        public var certFile = ""
        public var keyFile = ""
        public var keyFilePass = ""
        public var caCertFile = ""
        public var caCertDir = ""
        public var authClients = ClientAuth.yes
        /// "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3" (Redis's spelling, any case).
        public var protocols: Set<String> = ["tlsv1.2", "tlsv1.3"]
        public var ciphers = ""
        public var ciphersuites = ""
        public var preferServerCiphers = false
        public var sessionCaching = true
        public var sessionCacheSize = 20 * 1024
        public var sessionCacheTimeout = 300
        /// Milliseconds an accepted connection has to finish its handshake (0: no limit).
        public var handshakeTimeoutMillis = 10_000
        public init() {}
    }

    let ctx: OpaquePointer
    public let settings: Settings

    /// Loads the certificate, key and CAs now; every failure is Redis's own words
    /// ("Failed to load certificate: FILE: reason"), so the caller can refuse to start on it.
    public init(settings s: Settings) throws {
        guard !s.certFile.isEmpty else { throw ReactorError("No tls-cert-file configured!") }
        guard !s.keyFile.isEmpty else { throw ReactorError("No tls-key-file configured!") }
        if s.authClients != .no && s.caCertFile.isEmpty && s.caCertDir.isEmpty {
            throw ReactorError("Either tls-ca-cert-file or tls-ca-cert-dir must be specified when tls-auth-clients is yes or optional!")
        }
        guard let c = SSL_CTX_new(TLS_server_method()) else { throw ReactorError("TLS: \(TLSServer.lastError())") }
        ctx = c
        settings = s
        tp_ssl_ctx_server_defaults(c)
        tp_ssl_ctx_set_protocols(c, s.protocols.contains("tlsv1") ? 1 : 0, s.protocols.contains("tlsv1.1") ? 1 : 0,
                                 s.protocols.contains("tlsv1.2") ? 1 : 0, s.protocols.contains("tlsv1.3") ? 1 : 0)
        // A client without TLS errors (a half-open socket, a killed process) has simply left.
        tp_ssl_ctx_ignore_unexpected_eof(c)
        SSL_CTX_set_verify(c, TLSServer.verifyMode(s.authClients), nil)
        // The passphrase lives only while the key is read.
        let pass: UnsafeMutablePointer<CChar>? = s.keyFilePass.isEmpty ? nil : strdup(s.keyFilePass)
        tp_ssl_ctx_set_key_pass(c, pass)
        defer {
            tp_ssl_ctx_set_key_pass(c, nil)
            if let pass { memset(pass, 0, strlen(pass)); free(pass) }
        }
        ERR_clear_error()
        guard SSL_CTX_use_certificate_chain_file(c, s.certFile) > 0 else {
            throw ReactorError("Failed to load certificate: \(s.certFile): \(TLSServer.lastError())")
        }
        guard SSL_CTX_use_PrivateKey_file(c, s.keyFile, SSL_FILETYPE_PEM) > 0 else {
            throw ReactorError("Failed to load private key: \(s.keyFile): \(TLSServer.lastError())")
        }
        guard SSL_CTX_check_private_key(c) == 1 else {
            throw ReactorError("Private key \(s.keyFile) does not match certificate \(s.certFile)")
        }
        if !s.caCertFile.isEmpty || !s.caCertDir.isEmpty {
            guard SSL_CTX_load_verify_locations(c, s.caCertFile.isEmpty ? nil : s.caCertFile,
                                                s.caCertDir.isEmpty ? nil : s.caCertDir) > 0 else {
                throw ReactorError("Failed to configure CA certificate(s) file/directory: \(TLSServer.lastError())")
            }
        }
        if !s.ciphers.isEmpty && SSL_CTX_set_cipher_list(c, s.ciphers) != 1 {
            throw ReactorError("Failed to configure ciphers: \(s.ciphers)")
        }
        if !s.ciphersuites.isEmpty && SSL_CTX_set_ciphersuites(c, s.ciphersuites) != 1 {
            throw ReactorError("Failed to configure ciphersuites: \(s.ciphersuites)")
        }
        if s.preferServerCiphers { tp_ssl_ctx_prefer_server_ciphers(c) }
        tp_ssl_ctx_session_cache(c, s.sessionCaching ? 1 : 0, s.sessionCacheSize, s.sessionCacheTimeout)
    }

    deinit { SSL_CTX_free(ctx) }

    /// A new `SSL` for one accepted connection.
    func makeSSL() -> OpaquePointer? { SSL_new(ctx) }

    /// Redis's mapping: yes demands a certificate, optional checks one if sent, no never asks.
    private static func verifyMode(_ auth: ClientAuth) -> Int32 {
        switch auth {
        case .no: return SSL_VERIFY_NONE
        case .optional: return SSL_VERIFY_PEER
        case .yes: return SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
        }
    }

    /// The certificate's subject and serial, for the log line after a load or a reload.
    public var certificateSummary: String {
        guard let x = SSL_CTX_get0_certificate(ctx) else { return "no certificate" }
        var buf = [CChar](repeating: 0, count: 256)
        X509_NAME_oneline(X509_get_subject_name(x), &buf, Int32(buf.count))
        let subject = String(cString: buf)
        var serial = "?"
        if let bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(x), nil) {
            if let hex = BN_bn2hex(bn) { serial = String(cString: hex); CRYPTO_free(hex, nil, 0) }
            BN_free(bn)
        }
        return "\(subject), serial \(serial)"
    }

    /// Every reason OpenSSL queued, in order (a wrong passphrase is "bad decrypt" beneath
    /// the PEM error Redis prints alone).
    private static func lastError() -> String {
        var reasons: [String] = []
        while case let code = ERR_get_error(), code != 0 {
            var buf = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buf, buf.count)
            reasons.append(String(cString: buf))
        }
        return reasons.isEmpty ? "unknown error" : reasons.joined(separator: "; ")
    }
}
