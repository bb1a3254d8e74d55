/// One HTTP request as a plain value: what the tiers build and the client sends.
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    /// Header names as they are sent; order kept.
    public var headers: [(String, String)]
    public var body: [UInt8]
    /// Per-attempt limit for this request (nil = the client's default).
    public var timeoutMillis: Int?

    public init(method: String, url: String, headers: [(String, String)] = [], body: [UInt8] = [],
                timeoutMillis: Int? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeoutMillis = timeoutMillis
    }

    public func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.0.lowercased() == n }?.1
    }
}

/// One HTTP response as a plain value. Header names are lower-cased.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]
    /// The HTTP version spoken ("1.1", "2").
    public var version: String

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = [], version: String = "1.1") {
        self.status = status
        self.headers = headers
        self.body = body
        self.version = version
    }

    /// The first header of that name (case-insensitive).
    public func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.0 == n }?.1
    }

    /// The body as text, for error messages (capped).
    public var bodySnippet: String {
        String(decoding: body.prefix(300), as: UTF8.self)
    }
}

/// Why a request got no HTTP response at all.
public enum HTTPError: Error, Equatable, CustomStringConvertible, Sendable {
    /// DNS, refused, reset, TLS handshake or certificate failure: the request may not have been sent.
    case connect(String)
    /// The per-attempt timeout passed (the request may have been applied).
    case timeout(String)
    /// Anything else the transport reported (the request may have been applied).
    case transport(String)

    public var description: String {
        switch self {
        case .connect(let m): return "cannot connect: \(m)"
        case .timeout(let m): return "timed out: \(m)"
        case .transport(let m): return "transport error: \(m)"
        }
    }
}
