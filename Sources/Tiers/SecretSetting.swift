import Glibc

/// A secret setting (account key, SAS, connection string, client secret): a literal, or
/// `keyvault://VAULT/NAME`, fetched at start and again on `KeyVaultResolver.reload` (SIGHUP).
/// Shared by every loop's tier, so the value sits behind a lock; it never prints itself.
public final class SecretSetting: CustomStringConvertible, @unchecked Sendable {
    /// The Key Vault reference, nil for literals.
    public let reference: KeyVaultReference?
    private var value: Secret?
    private var lock = pthread_mutex_t()

    /// Parses `text`: a `keyvault://` reference (resolved later) or the secret itself.
    public init(_ text: String) {
        reference = KeyVaultReference(text)
        value = reference == nil ? Secret(text) : nil
        pthread_mutex_init(&lock, nil)
    }

    public init(literal: Secret) {
        reference = nil
        value = literal
        pthread_mutex_init(&lock, nil)
    }

    deinit { pthread_mutex_destroy(&lock) }

    /// The current value; nil until a Key Vault reference has been resolved.
    public var current: Secret? {
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        return value
    }

    func set(_ s: Secret) {
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        value = s
    }

    public var description: String {
        if let r = reference { return "\(r) (\(current == nil ? "unresolved" : "resolved"))" }
        return current?.description ?? "<unset>"
    }
}

/// `keyvault://VAULT/SECRET[/VERSION]`. VAULT is a vault name (→ https://VAULT.vault.azure.net)
/// or a host[:port] with a dot or colon in it (used as is).
public struct KeyVaultReference: Equatable, CustomStringConvertible, Sendable {
    public var vault: String
    public var name: String
    public var version: String?

    public init?(_ text: String) {
        let prefix = "keyvault://"
        guard text.hasPrefix(prefix) else { return nil }
        let parts = text.dropFirst(prefix.count).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2 || parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty else { return nil }
        vault = parts[0]
        name = parts[1]
        version = parts.count == 3 && !parts[2].isEmpty ? parts[2] : nil
    }

    /// The vault's base URL, `scheme` "https" except in tests against an emulator.
    public func vaultURL(scheme: String = "https") -> String {
        vault.contains(".") || vault.contains(":") ? "\(scheme)://\(vault)" : "\(scheme)://\(vault).vault.azure.net"
    }

    public var description: String { "keyvault://\(vault)/\(name)" + (version.map { "/" + $0 } ?? "") }
}

/// Fetches Key Vault secrets with an Entra ID token (scope https://vault.azure.net/.default).
public final class KeyVaultResolver {
    let client: RetryingClient
    let credential: TokenCredential
    /// "http" only for emulator tests.
    public var scheme = "https"
    public static let scope = "https://vault.azure.net/.default"
    /// Every setting handed to `resolve`, for `reload`.
    private var known = [SecretSetting]()

    public init(http: HTTPClient, credential: TokenCredential, policy: RetryPolicy = RetryPolicy()) {
        client = RetryingClient(http: http, policy: policy)
        self.credential = credential
        client.onUnauthorized = { [weak credential] in credential?.invalidate(scope: KeyVaultResolver.scope) }
    }

    /// Fetches one secret's current value.
    public func fetch(_ ref: KeyVaultReference, _ done: @escaping (Result<Secret, TierError>) -> Void) {
        let url = ref.vaultURL(scheme: scheme) + "/secrets/"
            + PercentEncoding.encode(ref.name, keeping: PercentEncoding.unreserved)
            + (ref.version.map { "/" + PercentEncoding.encode($0, keeping: PercentEncoding.unreserved) } ?? "")
            + "?api-version=7.4"
        client.perform("get secret \(ref)", build: { [credential] ready in
            credential.token(for: KeyVaultResolver.scope) { t in
                ready(t.map { HTTPRequest(method: "GET", url: url, headers: [("Authorization", "Bearer " + $0.token.reveal)]) })
            }
        }) { [client] r in
            done(r.flatMap { response in
                guard response.status == 200 else {
                    let why = JSONValue.parse(response.body)?["error"]?["message"]?.string ?? response.bodySnippet
                    let e: TierError = response.status == 401 || response.status == 403
                        ? .unauthorized("\(ref): HTTP \(response.status): \(why)")
                        : .failed("\(ref): HTTP \(response.status): \(why)")
                    return .failure(client.failed(e))
                }
                guard let v = JSONValue.parse(response.body)?["value"]?.string else {
                    return .failure(.corrupt("\(ref): response has no value"))
                }
                return .success(Secret(v))
            })
        }
    }

    /// Resolves every Key Vault reference among `settings` (literals are left alone) and
    /// remembers them for `reload`. Completes with the errors, empty when all resolved.
    public func resolve(_ settings: [SecretSetting], _ done: @escaping ([TierError]) -> Void) {
        for s in settings where !known.contains(where: { $0 === s }) { known.append(s) }
        let refs = settings.filter { $0.reference != nil }
        fanOut(refs.count, { i, cb in
            self.fetch(refs[i].reference!) { r in cb(r.map { refs[i].set($0) }) }
        }) { results in
            done(results.compactMap { if case .failure(let e) = $0 { return e } else { return nil } })
        }
    }

    /// Fetches every known reference again (SIGHUP). A failed fetch keeps the previous value.
    public func reload(_ done: @escaping ([TierError]) -> Void) { resolve(known, done) }
}
