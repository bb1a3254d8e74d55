/// How a Cosmos or Blob tier proves who it is.
public enum AzureAuth: CustomStringConvertible {
    /// Cosmos master key or Storage account key (base64), literal or `keyvault://`.
    case sharedKey(SecretSetting)
    /// Blob only: a SAS token appended to every URL.
    case sas(SecretSetting)
    /// Entra ID bearer tokens (one credential per loop; see `IdentityEnvironment.makeCredential`).
    case entraID(TokenCredential)

    public var description: String {
        switch self {
        case .sharedKey: return "shared key"
        case .sas: return "SAS"
        case .entraID(let c): return "Entra ID (\(c.kind))"
        }
    }

    /// The decoded key bytes of a shared key, or why there are none.
    func keyBytes(_ setting: SecretSetting, _ what: String) -> Result<[UInt8], TierError> {
        guard let s = setting.current else {
            return .failure(.unauthorized("\(what) key \(setting) is not resolved yet"))
        }
        guard let bytes = Base64.decode(s.reveal), !bytes.isEmpty else {
            return .failure(.unauthorized("\(what) key is not valid base64"))
        }
        return .success(bytes)
    }
}

/// The "scheme://host[:port]" part of a URL (no trailing slash), and its host.
func urlOrigin(_ url: String) -> (origin: String, host: String) {
    var s = Substring(url)
    var scheme = "https"
    if let colon = s.firstIndex(of: ":"), s[colon...].hasPrefix("://") {
        scheme = String(s[..<colon])
        s = s[s.index(colon, offsetBy: 3)...]
    }
    let hostPort = s.prefix { $0 != "/" && $0 != "?" }
    let host = hostPort.split(separator: ":").first.map(String.init) ?? String(hostPort)
    return ("\(scheme)://\(hostPort)", host)
}

/// A short reason from an Azure error body: Cosmos JSON `{"code","message"}` or Blob XML
/// `<Code>…</Code><Message>…</Message>`, else the start of the body.
func azureErrorReason(_ r: HTTPResponse) -> String {
    var code = r.header("x-ms-error-code")
    var message: String?
    if let json = JSONValue.parse(r.body) {
        code = code ?? json["code"]?.string
        message = json["message"]?.string
    } else {
        let text = String(decoding: r.body.prefix(2000), as: UTF8.self)
        func tag(_ name: String) -> String? {
            guard let start = text.firstRange(of: "<\(name)>"), let end = text.firstRange(of: "</\(name)>"),
                  start.upperBound <= end.lowerBound else { return nil }
            return String(text[start.upperBound..<end.lowerBound])
        }
        code = code ?? tag("Code")
        message = tag("Message")
    }
    var out = "HTTP \(r.status)"
    if let c = code { out += " " + c }
    if let m = message {
        // Cosmos messages run long (activity ids, request URIs): the first line is enough.
        out += ": " + (m.split(separator: "\n").first.map(String.init) ?? m).prefix(200)
    } else if code == nil, !r.body.isEmpty {
        out += ": " + r.bodySnippet.prefix(200)
    }
    return out
}

/// The tier error for a response status the tier does not expect.
func tierError(for r: HTTPResponse, _ what: String) -> TierError {
    let reason = "\(what): \(azureErrorReason(r))"
    switch r.status {
    case 401, 403: return .unauthorized(reason)
    case 408, 429, 449, 500...599: return .unavailable(reason)
    default: return .failed(reason)
    }
}
