import COpenSSL
import Glibc

/// Client-side TLS for outgoing connections: one `SSL_CTX` for the whole process, built once at
/// start (trusted CAs, an optional client certificate, whether the peer is verified), and the
/// name every connection's peer must prove. Each connection gets its own `SSL` from it
/// (`makeSSL`); OpenSSL's `SSL_CTX` may be shared by every loop's thread.
public final class TLSClient {
    let ctx: OpaquePointer
    /// The name sent as SNI and checked against the certificate (an IP literal is checked
    /// against the certificate's IP addresses and not sent as SNI, as RFC 6066 asks).
    public let serverName: String
    public let verifiesPeer: Bool

    /// - caFile/caDir: PEM bundle and hashed directory of trusted CAs; both empty: the system
    ///   store (OpenSSL's default paths, which honour SSL_CERT_FILE and SSL_CERT_DIR).
    /// - certFile/keyFile: a client certificate (chain) and its key, for servers that ask.
    /// - verifyPeer: false accepts any certificate (development only).
    public init(serverName: String, caFile: String = "", caDir: String = "", certFile: String = "",
                keyFile: String = "", verifyPeer: Bool = true) throws {
        guard let c = SSL_CTX_new(TLS_client_method()) else { throw ReactorError("TLS: \(TLSClient.lastError())") }
        ctx = c
        self.serverName = serverName
        self.verifiesPeer = verifyPeer
        // Redis's own minimum; idle connections give their read/write buffers back (a proxy may
        // hold thousands of pinned upstream connections).
        _ = tp_ssl_ctx_set_min_tls12(c)
        _ = tp_ssl_ctx_set_mode(c, Int(SSL_MODE_RELEASE_BUFFERS))
        // Redis killed or restarted closes without close_notify: that is the end of the stream
        // (as a TCP FIN is), not a TLS error; RESP replies are self-delimiting, and a reply cut
        // short is an error to the proxy either way.
        tp_ssl_ctx_ignore_unexpected_eof(c)
        if verifyPeer {
            SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nil)
            if caFile.isEmpty && caDir.isEmpty {
                guard SSL_CTX_set_default_verify_paths(c) == 1 else {
                    throw ReactorError("TLS: cannot load the system's CA store: \(TLSClient.lastError())")
                }
            } else {
                guard SSL_CTX_load_verify_locations(c, caFile.isEmpty ? nil : caFile, caDir.isEmpty ? nil : caDir) == 1 else {
                    let what = [caFile, caDir].filter { !$0.isEmpty }.joined(separator: ", ")
                    throw ReactorError("TLS: cannot load CA certificates from \(what): \(TLSClient.lastError())")
                }
            }
        } else {
            SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nil)
        }
        if certFile.isEmpty != keyFile.isEmpty {
            throw ReactorError("TLS: a client certificate needs both its certificate file and its key file")
        }
        if !certFile.isEmpty {
            guard SSL_CTX_use_certificate_chain_file(c, certFile) == 1 else {
                throw ReactorError("TLS: cannot load client certificate \(certFile): \(TLSClient.lastError())")
            }
            guard SSL_CTX_use_PrivateKey_file(c, keyFile, SSL_FILETYPE_PEM) == 1 else {
                throw ReactorError("TLS: cannot load client key \(keyFile): \(TLSClient.lastError())")
            }
            guard SSL_CTX_check_private_key(c) == 1 else {
                throw ReactorError("TLS: client key \(keyFile) does not match certificate \(certFile)")
            }
        }
    }

    deinit { SSL_CTX_free(ctx) }

    /// Refuses at start a name OpenSSL would not check (so no connection fails for it later).
    public func validate() throws {
        guard let ssl = makeSSL() else { throw ReactorError("TLS: cannot verify the name '\(serverName)'") }
        SSL_free(ssl)
    }

    /// A new `SSL` for one connection: SNI and the name (or address) the certificate must carry.
    func makeSSL() -> OpaquePointer? {
        guard let ssl = SSL_new(ctx) else { return nil }
        let isIP = TLSClient.isIPLiteral(serverName)
        if !isIP && !serverName.isEmpty { _ = tp_ssl_set_sni(ssl, serverName) }
        if verifiesPeer && !serverName.isEmpty {
            let ok = isIP ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), serverName)
                          : SSL_set1_host(ssl, serverName)
            if ok != 1 { SSL_free(ssl); return nil }
        }
        return ssl
    }

    static func isIPLiteral(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// Why a connection's TLS failed, in words a person can act on: the certificate check's own
    /// verdict first (wrong CA, wrong name, expired), else OpenSSL's reasons, else `fallback`.
    static func failure(ssl: OpaquePointer?, errors: [UInt], fallback: String?) -> String {
        if let ssl {
            let verdict = SSL_get_verify_result(ssl)
            if verdict != Int(X509_V_OK) {
                return "TLS certificate verification failed: \(String(cString: X509_verify_cert_error_string(verdict)))"
            }
        }
        let reasons = errors.compactMap { code -> String? in
            guard let r = ERR_reason_error_string(code) else { return nil }
            return String(cString: r)
        }
        if !reasons.isEmpty { return "TLS error: " + reasons.joined(separator: "; ") }
        return fallback ?? "TLS connection closed"
    }

    private static func lastError() -> String {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return "unknown error" }
        var buf = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buf, buf.count)
        return String(cString: buf)
    }
}
