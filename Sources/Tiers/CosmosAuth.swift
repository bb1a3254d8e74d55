/// Cosmos DB request authorization: master-key HMAC signatures and Entra ID bearer tokens.
public enum CosmosAuth {
    /// The string the master key signs: verb, resource type, resource link, date, empty date, each
    /// followed by a newline. Verb, type and date are lower-cased; the link keeps its case.
    public static func stringToSign(verb: String, resourceType: String, resourceLink: String, date: String) -> String {
        verb.lowercased() + "\n" + resourceType.lowercased() + "\n" + resourceLink + "\n" + date.lowercased() + "\n\n"
    }

    /// base64(HMAC-SHA256(key, stringToSign)).
    public static func signature(key: [UInt8], verb: String, resourceType: String, resourceLink: String,
                                 date: String) -> String {
        let text = stringToSign(verb: verb, resourceType: resourceType, resourceLink: resourceLink, date: date)
        return Base64.encode(Crypto.hmacSHA256(key: key, message: Array(text.utf8)))
    }

    /// The `authorization` header value for a master key: URL-encoded `type=master&ver=1.0&sig=…`
    /// with every reserved character escaped, as the Python SDK sends it.
    public static func masterKeyAuthorization(key: [UInt8], verb: String, resourceType: String,
                                              resourceLink: String, date: String) -> String {
        let sig = signature(key: key, verb: verb, resourceType: resourceType, resourceLink: resourceLink, date: date)
        return PercentEncoding.encode("type=master&ver=1.0&sig=" + sig, keeping: PercentEncoding.cosmosAuthSafe)
    }

    /// The `authorization` header value for an Entra ID token (sent as is, like the Python SDK).
    public static func tokenAuthorization(_ token: String) -> String {
        "type=aad&ver=1.0&sig=" + token
    }
}
