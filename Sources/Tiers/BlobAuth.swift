/// Blob Storage request authorization: Shared Key signatures, SAS tokens and bearer tokens.
public enum BlobAuth {
    /// The Shared Key string to sign for a request.
    /// - `path`: the URL path as sent (percent-encoded), starting with "/". For path-style URLs
    ///   (Azurite) it already starts with the account, which then appears twice in the result.
    /// - `query`: query parameters, decoded.
    /// - `headers`: every header that will be sent (names in any case).
    public static func stringToSign(method: String, account: String, path: String, query: [(String, String)],
                                    headers: [(String, String)], contentLength: Int) -> String {
        var lower = [String: String]()
        var xms = [(String, String)]()
        for (n, v) in headers {
            let ln = n.lowercased()
            if ln.hasPrefix("x-ms-") { xms.append((ln, v)) } else { lower[ln] = v }
        }
        var s = method.uppercased() + "\n"
        for name in ["content-encoding", "content-language"] { s += (lower[name] ?? "") + "\n" }
        // Versions from 2015-02-21 sign an empty Content-Length when it is zero.
        s += (contentLength == 0 ? "" : String(contentLength)) + "\n"
        for name in ["content-md5", "content-type", "date", "if-modified-since", "if-match",
                     "if-none-match", "if-unmodified-since", "range"] {
            s += (lower[name] ?? "") + "\n"
        }
        xms.sort { StorageHeaderCollation.less($0.0, $1.0) }
        for (n, v) in xms { s += n + ":" + v + "\n" }
        s += "/" + account + path
        var q = [String: [String]]()
        for (n, v) in query { q[n.lowercased(), default: []].append(v) }
        for name in q.keys.sorted() { s += "\n" + name + ":" + q[name]!.sorted().joined(separator: ",") }
        return s
    }

    /// `SharedKey {account}:{base64(HMAC-SHA256(key, stringToSign))}`.
    public static func sharedKeyAuthorization(account: String, key: [UInt8], stringToSign: String) -> String {
        "SharedKey " + account + ":" + Base64.encode(Crypto.hmacSHA256(key: key, message: Array(stringToSign.utf8)))
    }

    /// Appends a SAS token (with or without its leading "?") to a URL that may already have a query.
    public static func appendSAS(_ sas: String, to url: String) -> String {
        var token = Substring(sas)
        while token.first == "?" { token = token.dropFirst() }
        if token.isEmpty { return url }
        return url + (url.contains("?") ? "&" : "?") + token
    }

    /// The `Authorization` value for an Entra ID token (needs x-ms-version ≥ 2017-11-09).
    public static func bearerAuthorization(_ token: String) -> String { "Bearer " + token }
}

/// Splits a URL into what Shared Key signs: the path as sent and the query parameters decoded.
enum BlobURL {
    static func split(_ url: String) -> (path: String, query: [(String, String)]) {
        var rest = Substring(url)
        if let colon = rest.firstIndex(of: ":"), rest[colon...].hasPrefix("://") {
            rest = rest[rest.index(colon, offsetBy: 3)...]
        }
        let pathStart = rest.firstIndex(of: "/") ?? rest.endIndex
        let afterHost = rest[pathStart...]
        let q = afterHost.firstIndex(of: "?")
        let path = String(afterHost[..<(q ?? afterHost.endIndex)])
        var query = [(String, String)]()
        if let q = q {
            for pair in afterHost[afterHost.index(after: q)...].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                query.append((PercentEncoding.decode(String(kv[0])),
                              kv.count > 1 ? PercentEncoding.decode(String(kv[1])) : ""))
            }
        }
        return (path.isEmpty ? "/" : path, query)
    }
}
