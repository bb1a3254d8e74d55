/// Which warm and cold tiers run, from `warm …` / `cold …` settings and the seed library's
/// environment variables. Parsing only: `TierFactory` turns a config into tiers.
///
/// Settings (URL-like):
///
///     warm cosmos://ACCOUNT-HOST[:PORT]/DATABASE/CONTAINER    Cosmos DB over https
///     warm cosmos+http://HOST:PORT/DATABASE/CONTAINER         (plain http, for emulators)
///     warm sqlite:PATH                                        embedded SQLite file
///     warm none
///     cold blob://ACCOUNT-HOST[:PORT][/ACCOUNT]/CONTAINER[?SAS] Blob Storage over https
///     cold blob+http://127.0.0.1:10000/devstoreaccount1/CONTAINER   (Azurite)
///     cold dir:PATH                                           one file per entry
///     cold none
///
/// A `?query` on cosmos/blob URLs is kept as `options` (percent-decoded), except that a blob
/// query holding `sig=` is taken as the SAS token.
///
/// Resolution, per tier: an explicit setting wins; otherwise the seed's environment variables
/// (`COSMOS_ACCOUNT_URI`/`COSMOS_ENDPOINT` → Cosmos warm; `AZURE_STORAGE_CONNECTION_STRING` or
/// `BLOB_ACCOUNT_URL` → Blob cold); otherwise `sqlite:DATA_DIR/warm.db` and `dir:DATA_DIR/cold`.
/// Credentials missing from a setting are filled from `COSMOS_KEY` and the connection string;
/// none at all means Entra ID (the HTTP side's business).
public struct TierConfig: Equatable, Sendable {
    public var warm: TierSpec
    public var cold: TierSpec
    /// Cold values at least this large are stored gzip (directory tier; blob when the HTTP side does).
    public var compressThreshold: Int = 1 << 20
    /// fsync policy of the directory tier.
    public var directorySync: DirectoryTier.Sync = .full

    public init(warm: TierSpec, cold: TierSpec) {
        self.warm = warm
        self.cold = cold
    }

    public enum Role: String, Sendable { case warm, cold }

    /// Resolves both tiers. `warm`/`cold` are the settings' values if given; `environment` is
    /// the process environment (a parameter so tests and `tiers check` can pass their own).
    public static func resolve(warm: String?, cold: String?, dataDir: String,
                               environment env: [String: String]) throws(TierError) -> TierConfig {
        let dir = dataDir.count > 1 && dataDir.hasSuffix("/") ? String(dataDir.dropLast()) : dataDir
        let connection = try env.nonEmpty("AZURE_STORAGE_CONNECTION_STRING").map { s throws(TierError) in
            try StorageConnectionString.parse(s)
        }

        var warmSpec: TierSpec
        if let w = warm {
            warmSpec = try TierSpec.parse(w, role: .warm)
        } else if let uri = env.nonEmpty("COSMOS_ACCOUNT_URI") ?? env.nonEmpty("COSMOS_ENDPOINT") {
            warmSpec = .cosmos(try CosmosSpec(endpoint: uri, database: env.nonEmpty("COSMOS_DATABASE") ?? "memory",
                                              container: env.nonEmpty("COSMOS_CONTAINER") ?? "state"))
        } else {
            warmSpec = .sqlite(path: dir + "/warm.db")
        }
        if case .cosmos(var c) = warmSpec, c.key == nil, let key = env.nonEmpty("COSMOS_KEY") {
            c.key = key
            warmSpec = .cosmos(c)
        }

        var coldSpec: TierSpec
        if let c = cold {
            coldSpec = try TierSpec.parse(c, role: .cold)
        } else if let cs = connection {
            coldSpec = .blob(try BlobSpec(accountURL: cs.blobAccountURL, container: env.nonEmpty("BLOB_CONTAINER") ?? "memory"))
        } else if let url = env.nonEmpty("BLOB_ACCOUNT_URL") {
            coldSpec = .blob(try BlobSpec(accountURL: url, container: env.nonEmpty("BLOB_CONTAINER") ?? "memory"))
        } else {
            coldSpec = .directory(path: dir + "/cold")
        }
        if case .blob(var b) = coldSpec, b.accountKey == nil, b.sasToken == nil, let cs = connection {
            // The connection string's credentials apply to its own account only.
            if b.accountName == nil || b.accountName == cs.accountName {
                b.accountName = cs.accountName ?? b.accountName
                b.accountKey = cs.accountKey
                b.sasToken = cs.sharedAccessSignature
                coldSpec = .blob(b)
            }
        }
        return TierConfig(warm: warmSpec, cold: coldSpec)
    }
}

/// One configured lower tier.
public enum TierSpec: Equatable, Sendable, CustomStringConvertible {
    case none
    case sqlite(path: String)
    case directory(path: String)
    case cosmos(CosmosSpec)
    case blob(BlobSpec)

    /// Parses a `warm`/`cold` setting value; the role limits which schemes make sense.
    public static func parse(_ text: String, role: TierConfig.Role) throws(TierError) -> TierSpec {
        let value = text.trimmingSpaces
        let allowed = role == .warm ? "cosmos://HOST/DATABASE/CONTAINER, sqlite:PATH or none"
                                    : "blob://HOST/CONTAINER, dir:PATH or none"
        guard let colon = value.firstIndex(of: ":") else {
            if value == "none" { return .none }
            throw .failed("\(role) tier \"\(shownSetting(value))\": expected \(allowed)")
        }
        let scheme = value[..<colon].lowercased()
        let rest = String(value[value.index(after: colon)...])
        let spec: TierSpec
        switch scheme {
        case "sqlite", "dir":
            // Accept sqlite:///abs/path too, as people type URLs.
            let path = rest.hasPrefix("//") ? String(rest.dropFirst(2)) : rest
            guard !path.isEmpty else { throw .failed("\(role) tier \"\(shownSetting(value))\": \(scheme): needs a path") }
            spec = scheme == "sqlite" ? .sqlite(path: path) : .directory(path: path)
        case "cosmos", "cosmos+http", "cosmos+https":
            spec = .cosmos(try CosmosSpec(url: value, scheme: scheme, rest: rest))
        case "blob", "blob+http", "blob+https":
            spec = .blob(try BlobSpec(url: value, scheme: scheme, rest: rest))
        default:
            throw .failed("\(role) tier \"\(shownSetting(value))\": unknown scheme \"\(scheme)\"; expected \(allowed)")
        }
        switch (role, spec) {
        case (.warm, .sqlite), (.warm, .cosmos), (.cold, .directory), (.cold, .blob): return spec
        default: throw .failed("\(role) tier \"\(shownSetting(value))\": \(scheme) is not a \(role) tier; expected \(allowed)")
        }
    }

    public var description: String {
        switch self {
        case .none: return "none"
        case .sqlite(let p): return "sqlite:\(p)"
        case .directory(let p): return "dir:\(p)"
        case .cosmos(let c): return "cosmos \(c.endpoint)/\(c.database)/\(c.container)"
        case .blob(let b): return "blob \(b.accountURL)/\(b.container)"
        }
    }
}

/// A Cosmos DB container. Documents use `TierNames.cosmosID` as id and as partition key value.
public struct CosmosSpec: Equatable, Sendable {
    /// `https://ACCOUNT.documents.azure.com:443`, no trailing slash.
    public var endpoint: String
    public var database: String
    public var container: String
    /// Master key (base64); nil means Entra ID.
    public var key: String?
    /// Extra `?name=value` settings from the URL, for the HTTP side (e.g. a partition key path).
    public var options: [String: String] = [:]

    public init(endpoint: String, database: String, container: String, key: String? = nil) throws(TierError) {
        var e = endpoint.trimmingSpaces
        while e.hasSuffix("/") { e.removeLast() }
        guard e.hasPrefix("https://") || e.hasPrefix("http://"), e.count > 8 else {
            throw .failed("Cosmos endpoint \"\(endpoint)\" must be an http(s):// URL")
        }
        guard !database.isEmpty, !container.isEmpty else { throw .failed("Cosmos database and container names must not be empty") }
        self.endpoint = e
        self.database = database
        self.container = container
        self.key = key
    }

    init(url: String, scheme: String, rest: String) throws(TierError) {
        let (authority, segments, query) = try splitURL(url, rest)
        guard segments.count == 2 else {
            throw .failed("warm tier \"\(shownSetting(url))\": expected \(scheme)://HOST/DATABASE/CONTAINER")
        }
        try self.init(endpoint: (scheme == "cosmos+http" ? "http://" : "https://") + authority,
                      database: segments[0], container: segments[1])
        options = query
        key = query["key"]
    }
}

/// A Blob Storage container.
public struct BlobSpec: Equatable, Sendable {
    /// `https://ACCOUNT.blob.core.windows.net`, or path-style `http://127.0.0.1:10000/ACCOUNT`.
    public var accountURL: String
    public var container: String
    /// From the host (`ACCOUNT.blob…`), the path (path-style), or a connection string.
    public var accountName: String?
    public var accountKey: String?
    /// SAS token without the leading `?`.
    public var sasToken: String?
    public var options: [String: String] = [:]

    public init(accountURL: String, container: String, accountKey: String? = nil, sasToken: String? = nil) throws(TierError) {
        var u = accountURL.trimmingSpaces
        // BLOB_ACCOUNT_URL may carry a SAS (`https://acct.blob.core.windows.net/?sv=…&sig=…`).
        var sas = sasToken
        if let q = u.firstIndex(of: "?") {
            let query = String(u[u.index(after: q)...])
            if sas == nil, query.contains("sig=") { sas = query }
            u = String(u[..<q])
        }
        while u.hasSuffix("/") { u.removeLast() }
        guard u.hasPrefix("https://") || u.hasPrefix("http://") else {
            throw .failed("Blob account URL \"\(shownSetting(accountURL))\" must be an http(s):// URL")
        }
        guard !container.isEmpty else { throw .failed("Blob container name must not be empty") }
        self.accountURL = u
        self.container = container
        self.accountKey = accountKey
        self.sasToken = sas
        self.accountName = Self.accountName(fromURL: u)
    }

    init(url: String, scheme: String, rest: String) throws(TierError) {
        let (authority, segments, query) = try splitURL(url, rest)
        guard (1...2).contains(segments.count) else {
            throw .failed("cold tier \"\(shownSetting(url))\": expected \(scheme)://HOST[/ACCOUNT]/CONTAINER")
        }
        let base = (scheme == "blob+http" ? "http://" : "https://") + authority
            + (segments.count == 2 ? "/" + segments[0] : "")
        let rawQuery = url.firstIndex(of: "?").map { String(url[url.index(after: $0)...]) }
        let sas = rawQuery.flatMap { $0.contains("sig=") ? $0 : nil }
        try self.init(accountURL: base, container: segments[segments.count - 1], sasToken: sas)
        if sas == nil { options = query }
    }

    /// `acct` from `https://acct.blob.core.windows.net`, or the first path segment of a path-style URL.
    static func accountName(fromURL url: String) -> String? {
        guard let schemeEnd = url.firstRange(of: "://") else { return nil }
        let afterScheme = url[schemeEnd.upperBound...]
        let hostPort = afterScheme.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let host = hostPort[0].split(separator: ":")[0]
        if hostPort.count == 2, !hostPort[1].isEmpty {
            return String(hostPort[1].split(separator: "/")[0])
        }
        if host.contains("."), !host.allSatisfy({ $0.isNumber || $0 == "." }) {
            return String(host.split(separator: ".")[0])
        }
        return nil
    }
}

/// An Azure Storage connection string (`Key=Value;…`), as `AZURE_STORAGE_CONNECTION_STRING` holds.
public struct StorageConnectionString: Equatable, Sendable {
    public static let developmentAccountName = "devstoreaccount1"
    /// Azurite's published, well-known key (not a secret).
    public static let developmentAccountKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

    public var accountName: String?
    public var accountKey: String?
    public var blobEndpoint: String?
    public var defaultEndpointsProtocol = "https"
    public var endpointSuffix = "core.windows.net"
    public var sharedAccessSignature: String?
    public var useDevelopmentStorage = false

    /// Parses; keys are case-insensitive, values may contain `=` (base64 keys, SAS tokens).
    public static func parse(_ text: String) throws(TierError) -> StorageConnectionString {
        var cs = StorageConnectionString()
        for part in text.split(separator: ";") {
            let field = part.trimmingSpaces
            if field.isEmpty { continue }
            guard let eq = field.firstIndex(of: "=") else {
                // The field may be a piece of the key (a stray ';'): say where, not what.
                throw .failed("storage connection string: a field without '=' after \(cs.accountName.map { "AccountName \($0)" } ?? "the start")")
            }
            let name = field[..<eq].trimmingSpaces.lowercased()
            let value = field[field.index(after: eq)...].trimmingSpaces
            switch name {
            case "accountname": cs.accountName = value
            case "accountkey": cs.accountKey = value
            case "blobendpoint": cs.blobEndpoint = value
            case "defaultendpointsprotocol": cs.defaultEndpointsProtocol = value.lowercased()
            case "endpointsuffix": cs.endpointSuffix = value
            case "sharedaccesssignature": cs.sharedAccessSignature = value.hasPrefix("?") ? String(value.dropFirst()) : value
            case "usedevelopmentstorage": cs.useDevelopmentStorage = value.lowercased() == "true"
            default: break  // QueueEndpoint, TableEndpoint, FileEndpoint…: not ours
            }
        }
        if cs.useDevelopmentStorage {
            cs.accountName = cs.accountName ?? developmentAccountName
            cs.accountKey = cs.accountKey ?? developmentAccountKey
            cs.blobEndpoint = cs.blobEndpoint ?? "http://127.0.0.1:10000/\(developmentAccountName)"
        }
        guard cs.accountName != nil || cs.blobEndpoint != nil else {
            throw .failed("storage connection string has neither AccountName nor BlobEndpoint")
        }
        guard cs.defaultEndpointsProtocol == "https" || cs.defaultEndpointsProtocol == "http" else {
            throw .failed("storage connection string: DefaultEndpointsProtocol must be http or https")
        }
        if cs.accountKey != nil && cs.accountName == nil {
            throw .failed("storage connection string has AccountKey but no AccountName")
        }
        return cs
    }

    /// The blob service URL: BlobEndpoint if given, else PROTOCOL://ACCOUNT.blob.SUFFIX.
    public var blobAccountURL: String {
        if var e = blobEndpoint {
            while e.hasSuffix("/") { e.removeLast() }
            return e
        }
        return "\(defaultEndpointsProtocol)://\(accountName ?? "").blob.\(endpointSuffix)"
    }
}

// MARK: - Helpers (config time only)

/// A tier setting as an error may show it: the query (a SAS) and any user:password@ hidden.
func shownSetting(_ text: String) -> String {
    var out = text
    if let q = out.firstIndex(of: "?") { out = String(out[..<q]) + "?<redacted>" }
    if let start = out.firstRange(of: "://")?.upperBound, let at = out[start...].firstIndex(of: "@"),
       !out[start..<at].contains("/") {
        out = String(out[..<start]) + "<redacted>" + String(out[at...])
    }
    return out
}

/// Splits `scheme://authority/seg/seg?query` (given the text after `scheme:`).
private func splitURL(_ url: String, _ rest: String) throws(TierError) -> (String, [String], [String: String]) {
    guard rest.hasPrefix("//") else { throw .failed("\"\(shownSetting(url))\": expected \"//\" after the scheme") }
    var body = rest.dropFirst(2)
    var query = [String: String]()
    if let q = body.firstIndex(of: "?") {
        for pair in body[body.index(after: q)...].split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            query[percentDecoded(kv[0])] = kv.count == 2 ? percentDecoded(kv[1]) : ""
        }
        body = body[..<q]
    }
    let parts = body.split(separator: "/").map(String.init)
    guard let authority = parts.first, !authority.isEmpty else { throw .failed("\"\(shownSetting(url))\": missing host") }
    return (authority, parts.dropFirst().map { percentDecoded($0) }, query)
}

extension StringProtocol {
    fileprivate var trimmingSpaces: String {
        String(self.drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed())
    }
}

extension Dictionary where Key == String, Value == String {
    fileprivate func nonEmpty(_ name: String) -> String? {
        guard let v = self[name], !v.isEmpty else { return nil }
        return v
    }
}
