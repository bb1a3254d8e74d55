import Glibc

/// Where Entra ID tokens come from, read from the environment (overridable for tests, which
/// point every endpoint at the emulator's token server).
public struct IdentityEnvironment: Sendable {
    /// IMDS token endpoint (VMs, AKS). Env: `TIERPROXY_IMDS_ENDPOINT`.
    public var imdsEndpoint = "http://169.254.169.254/metadata/identity/oauth2/token"
    /// Entra ID authority, ending in "/". Env: `AZURE_AUTHORITY_HOST`.
    public var authorityHost = "https://login.microsoftonline.com/"
    /// App Service / Container Apps: `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`.
    public var identityEndpoint: String?
    public var identityHeader: Secret?
    public var tenantId: String?
    /// A user-assigned identity or an app registration: `AZURE_CLIENT_ID`.
    public var clientId: String?
    public var clientSecret: Secret?
    /// Workload identity: `AZURE_FEDERATED_TOKEN_FILE` (re-read on every fetch; it rotates).
    public var federatedTokenFile: String?

    public init() {}

    /// Reads the variables the Azure SDKs read.
    public static func from(_ env: [String: String]) -> IdentityEnvironment {
        var e = IdentityEnvironment()
        func v(_ name: String) -> String? { env[name].flatMap { $0.isEmpty ? nil : $0 } }
        if let x = v("TIERPROXY_IMDS_ENDPOINT") { e.imdsEndpoint = x }
        if let x = v("AZURE_AUTHORITY_HOST") { e.authorityHost = x.hasSuffix("/") ? x : x + "/" }
        e.identityEndpoint = v("IDENTITY_ENDPOINT")
        e.identityHeader = v("IDENTITY_HEADER").map(Secret.init)
        e.tenantId = v("AZURE_TENANT_ID")
        e.clientId = v("AZURE_CLIENT_ID")
        e.clientSecret = v("AZURE_CLIENT_SECRET").map(Secret.init)
        e.federatedTokenFile = v("AZURE_FEDERATED_TOKEN_FILE")
        return e
    }

    /// The process environment.
    public static func process() -> IdentityEnvironment {
        from(processEnvironment())
    }

    /// The credential these settings call for, cached: workload identity, else client secret,
    /// else App Service identity, else IMDS managed identity. One per loop (it uses `http`).
    public func makeCredential(http: HTTPClient) -> TokenCredential {
        CachingTokenCredential(makeFetcher(http: http))
    }

    /// The same source without the cache, for a caller that times its own refreshes.
    public func makeFetcher(http: HTTPClient) -> TokenFetcher {
        let client = RetryingClient(http: http, policy: IdentityEnvironment.tokenRetryPolicy)
        if let file = federatedTokenFile, let tenant = tenantId, let id = clientId {
            return EntraTokenFetcher(client: client, authorityHost: authorityHost, tenantId: tenant,
                                     clientId: id, proof: .assertionFile(file))
        }
        if let secret = clientSecret, let tenant = tenantId, let id = clientId {
            return EntraTokenFetcher(client: client, authorityHost: authorityHost, tenantId: tenant,
                                     clientId: id, proof: .secret(secret))
        }
        if let endpoint = identityEndpoint, let header = identityHeader {
            return ManagedIdentityFetcher(client: client, flavor: .appService(endpoint, header), clientId: clientId)
        }
        return ManagedIdentityFetcher(client: client, flavor: .imds(imdsEndpoint), clientId: clientId)
    }

    static var tokenRetryPolicy: RetryPolicy {
        var p = RetryPolicy()
        p.maxAttempts = 4
        p.deadlineMillis = 15_000
        p.retryStatuses.insert(404)  // IMDS answers 404 while the identity is being assigned
        return p
    }
}

/// Parses a token endpoint's JSON: `access_token` with `expires_on` (Unix seconds) or `expires_in`.
func parseTokenResponse(_ response: HTTPResponse, source: String, nowSeconds: Int64) -> Result<AccessToken, TierError> {
    guard let json = JSONValue.parse(response.body) else {
        return .failure(.unauthorized("\(source): HTTP \(response.status), not JSON"))
    }
    guard (200..<300).contains(response.status), let token = json["access_token"]?.string else {
        let why = json["error_description"]?.string ?? json["error"]?.string ?? json["message"]?.string ?? response.bodySnippet
        return .failure(.unauthorized("\(source): HTTP \(response.status): \(why)"))
    }
    var expires = nowSeconds + 3600
    if let on = json["expires_on"]?.int { expires = on } else if let inSec = json["expires_in"]?.int { expires = nowSeconds + inSec }
    return .success(AccessToken(token: Secret(token), expiresOn: expires))
}

/// Strips "/.default" from a scope: managed-identity endpoints take a resource.
func resource(fromScope scope: String) -> String {
    scope.hasSuffix("/.default") ? String(scope.dropLast("/.default".count)) : scope
}

/// Managed identity: IMDS on VMs/AKS, or the App Service / Container Apps identity endpoint.
public final class ManagedIdentityFetcher: TokenFetcher {
    public enum Flavor { case imds(String), appService(String, Secret) }
    let client: RetryingClient
    let flavor: Flavor
    let clientId: String?

    public init(client: RetryingClient, flavor: Flavor, clientId: String?) {
        self.client = client; self.flavor = flavor; self.clientId = clientId
    }

    public var kind: String {
        switch flavor {
        case .imds: return "managed identity (IMDS)"
        case .appService: return "managed identity (App Service)"
        }
    }

    public func fetchToken(for scope: String, _ done: @escaping (Result<AccessToken, TierError>) -> Void) {
        let res = PercentEncoding.encode(resource(fromScope: scope), keeping: PercentEncoding.queryValueSafe)
        var url: String
        var headers: [(String, String)]
        switch flavor {
        case .imds(let endpoint):
            url = endpoint + "?api-version=2018-02-01&resource=" + res
            headers = [("Metadata", "true")]
        case .appService(let endpoint, let header):
            url = endpoint + (endpoint.contains("?") ? "&" : "?") + "api-version=2019-08-01&resource=" + res
            headers = [("X-IDENTITY-HEADER", header.reveal)]
        }
        if let id = clientId { url += "&client_id=" + PercentEncoding.encode(id, keeping: PercentEncoding.queryValueSafe) }
        let request = HTTPRequest(method: "GET", url: url, headers: headers, timeoutMillis: 5_000)
        let source = kind
        client.perform("token from \(source)", build: { $0(.success(request)) }) { r in
            done(r.flatMap { parseTokenResponse($0, source: source, nowSeconds: wallClockMillis() / 1000) })
        }
    }
}

/// Entra ID client credentials: a client secret, or a federated assertion (workload identity).
public final class EntraTokenFetcher: TokenFetcher {
    public enum Proof { case secret(Secret), assertionFile(String) }
    let client: RetryingClient
    let authorityHost: String
    let tenantId: String
    let clientId: String
    let proof: Proof

    public init(client: RetryingClient, authorityHost: String, tenantId: String, clientId: String, proof: Proof) {
        self.client = client; self.authorityHost = authorityHost; self.tenantId = tenantId
        self.clientId = clientId; self.proof = proof
    }

    public var kind: String {
        switch proof {
        case .secret: return "client secret (\(clientId))"
        case .assertionFile: return "workload identity (\(clientId))"
        }
    }

    public func fetchToken(for scope: String, _ done: @escaping (Result<AccessToken, TierError>) -> Void) {
        func enc(_ s: String) -> String { PercentEncoding.encode(s, keeping: PercentEncoding.queryValueSafe) }
        var form = "grant_type=client_credentials&client_id=\(enc(clientId))&scope=\(enc(scope))"
        switch proof {
        case .secret(let s): form += "&client_secret=" + enc(s.reveal)
        case .assertionFile(let path):
            guard let assertion = readSmallFile(path) else {
                done(.failure(.unauthorized("workload identity: cannot read AZURE_FEDERATED_TOKEN_FILE \(path)")))
                return
            }
            form += "&client_assertion_type=" + enc("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            form += "&client_assertion=" + enc(assertion.trimmingSpaces.trimmingNewlines)
        }
        let url = authorityHost + enc(tenantId) + "/oauth2/v2.0/token"
        let request = HTTPRequest(method: "POST", url: url,
                                  headers: [("Content-Type", "application/x-www-form-urlencoded")],
                                  body: Array(form.utf8), timeoutMillis: 10_000)
        let source = kind
        client.perform("token from \(source)", build: { $0(.success(request)) }) { r in
            done(r.flatMap { parseTokenResponse($0, source: source, nowSeconds: wallClockMillis() / 1000) })
        }
    }
}

/// Reads a small file (a token file, a secret file) in one go; nil if unreadable or over 1 MiB.
func readSmallFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 16384)
    while out.count <= 1 << 20 {
        let n = read(fd, &chunk, chunk.count)
        if n < 0 { return nil }
        if n == 0 { return String(decoding: out, as: UTF8.self) }
        out += chunk[0..<n]
    }
    return nil
}

extension String {
    var trimmingNewlines: String {
        var s = Substring(self)
        while s.last == "\n" || s.last == "\r" { s = s.dropLast() }
        return String(s)
    }
}
