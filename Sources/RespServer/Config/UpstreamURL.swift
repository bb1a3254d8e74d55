import Tiers

/// Where the hot tier is: `redis://[user:pass@]host:port[/db]` (`rediss://` = TLS).
struct UpstreamURL: CustomStringConvertible {
    var tls = false
    var host = "127.0.0.1"
    var port = 6379
    var user: String?
    var password: String?
    var db = 0

    init() {}

    init(parsing text: String) throws {
        var rest = Substring(text)
        if rest.hasPrefix("redis://") { rest = rest.dropFirst(8) }
        else if rest.hasPrefix("rediss://") { rest = rest.dropFirst(9); tls = true }
        else { throw ConfigError("upstream must start with redis:// or rediss://: '\(UpstreamURL.masked(text))'") }
        if let at = rest.lastIndex(of: "@") {
            let cred = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = cred.firstIndex(of: ":") {
                let u = String(cred[..<colon])
                user = u.isEmpty ? nil : percentDecoded(u)
                password = percentDecoded(String(cred[cred.index(after: colon)...]))
            } else if !cred.isEmpty {
                password = percentDecoded(String(cred))   // redis://secret@host: a password alone
            }
        }
        if let slash = rest.firstIndex(of: "/") {
            let path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !path.isEmpty {
                guard let d = Int(path), d >= 0 else { throw ConfigError("upstream database must be a number: '\(path.prefix(20))'") }
                db = d
            }
        }
        if rest.hasPrefix("[") , let close = rest.firstIndex(of: "]") {   // [::1]:6379
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            rest = rest[rest.index(after: close)...]
            if rest.hasPrefix(":") { port = try Units.int(String(rest.dropFirst()), 1...65535) }
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            port = try Units.int(String(rest[rest.index(after: colon)...]), 1...65535)
        } else if !rest.isEmpty {
            host = String(rest)
        }
        if host.isEmpty { host = "127.0.0.1" }
    }

    /// The seed's `KEY_VAULT_URI` + `REDIS_PASSWORD_SECRET_NAME`, as a `keyvault://` reference.
    static func keyVaultPassword(_ env: [String: String]) -> String? {
        guard let uri = env["KEY_VAULT_URI"], let name = env["REDIS_PASSWORD_SECRET_NAME"], !name.isEmpty else { return nil }
        var host = Substring(uri)
        if let r = host.firstRange(of: "://") { host = host[r.upperBound...] }
        host = host.prefix { $0 != "/" }
        return host.isEmpty ? nil : "keyvault://\(host)/\(name)"
    }

    /// The URL with the password hidden, for logs.
    var description: String {
        var s = tls ? "rediss://" : "redis://"
        if user != nil || password != nil { s += "\(user ?? "")\(password == nil ? "" : ":***")@" }
        s += host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        if db != 0 { s += "/\(db)" }
        return s
    }

    /// `text` with anything between "://" and the last "@" hidden: what a URL that did not parse
    /// may show in an error.
    static func masked(_ text: String) -> String {
        guard let at = text.lastIndex(of: "@") else { return text }
        let start = text.firstRange(of: "://").map { $0.upperBound } ?? text.startIndex
        return start < at ? String(text[..<start]) + "***" + String(text[at...]) : "***" + String(text[at...])
    }
}
