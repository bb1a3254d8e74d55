import Glibc
import Reactor

/// Builds the HTTP tiers (Cosmos, Blob) for `TierFactory`, one per loop, and owns what they share:
/// the secret settings (resolved from Key Vault at start and on SIGHUP) and, per loop, one HTTP
/// client and one Entra ID credential.
///
///     let remote = RemoteTierMaker(config: config)
///     let factory = try TierFactory(config: config, remote: remote.maker)
///     remote.resolveSecrets(on: loop) { errors in … }      // before serving; again on SIGHUP
///     let (warm, cold) = try factory.tiers(for: loop)      // on each loop's thread
///
/// Spec options (the `?name=value` part of `cosmos://…` / `blob://…`):
/// Cosmos `partitionKeyPath` (or `pk`, default `/id`), `scope` (token scope), `version`;
/// Blob `scope`, `version`, `singlePutLimit`, `blockSize`.
public final class RemoteTierMaker: @unchecked Sendable {
    public let identity: IdentityEnvironment
    public let httpOptions: HTTPClientOptions
    public let compressThreshold: Int
    /// "http" to reach a Key Vault emulator; "https" otherwise.
    public var keyVaultScheme = "https"
    public let cosmosKey: SecretSetting?
    public let blobKey: SecretSetting?
    public let blobSAS: SecretSetting?
    /// Seals what the HTTP tiers store; its Key Vault references resolve with the secrets above.
    public let cipher: EntryCipher?
    private var lock = pthread_mutex_t()
    private var perLoop = [ObjectIdentifier: (http: HTTPClient, credential: TokenCredential)]()
    private var resolver: KeyVaultResolver?

    public init(config: TierConfig, identity: IdentityEnvironment = .process(),
                httpOptions: HTTPClientOptions = HTTPClientOptions(), cipher: EntryCipher? = nil) {
        self.identity = identity
        self.cipher = cipher
        self.httpOptions = httpOptions
        compressThreshold = config.compressThreshold
        var ck: SecretSetting?, bk: SecretSetting?, bs: SecretSetting?
        for spec in [config.warm, config.cold] {
            switch spec {
            case .cosmos(let c): ck = c.key.map(SecretSetting.init)
            case .blob(let b):
                bk = b.accountKey.map(SecretSetting.init)
                bs = b.sasToken.map(SecretSetting.init)
            default: break
            }
        }
        cosmosKey = ck; blobKey = bk; blobSAS = bs
        pthread_mutex_init(&lock, nil)
    }

    /// The factory hook.
    public var maker: TierFactory.RemoteMaker { { [self] spec, loop throws(TierError) in try make(spec, loop) } }

    /// This loop's HTTP client and Entra ID credential (made on first use).
    public func loopResources(_ loop: EventLoop) -> (http: HTTPClient, credential: TokenCredential) {
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        if let r = perLoop[ObjectIdentifier(loop)], r.http.loop === loop { return r }
        let http = HTTPClient(loop: loop, options: httpOptions)
        let r = (http, identity.makeCredential(http: http))
        perLoop[ObjectIdentifier(loop)] = r
        return r
    }

    public func make(_ spec: TierSpec, _ loop: EventLoop) throws(TierError) -> Tier {
        let (http, credential) = loopResources(loop)
        switch spec {
        case .cosmos(let c):
            var cfg = CosmosTierConfig(endpoint: c.endpoint)
            cfg.database = c.database
            cfg.container = c.container
            if let pk = c.options["partitionKeyPath"] ?? c.options["pk"] { cfg.partitionKeyPath = pk }
            cfg.tokenScope = c.options["scope"]
            if let v = c.options["version"] { cfg.apiVersion = v }
            cfg.cipher = cipher
            let auth: AzureAuth = cosmosKey.map { .sharedKey($0) } ?? .entraID(credential)
            return try CosmosTier(loop: loop, config: cfg, auth: auth, http: http)
        case .blob(let b):
            var cfg = BlobTierConfig(accountURL: b.accountURL)
            cfg.container = b.container
            cfg.account = b.accountName
            cfg.compressThreshold = compressThreshold
            cfg.cipher = cipher
            if let s = b.options["scope"] { cfg.tokenScope = s }
            if let v = b.options["version"] { cfg.apiVersion = v }
            if let n = b.options["singlePutLimit"].flatMap(Int.init) { cfg.singlePutLimit = n }
            if let n = b.options["blockSize"].flatMap(Int.init) { cfg.blockSize = n }
            let auth: AzureAuth = blobKey.map { .sharedKey($0) } ?? blobSAS.map { .sas($0) } ?? .entraID(credential)
            return BlobTier(loop: loop, config: cfg, auth: auth, http: http)
        default:
            throw .failed("not an HTTP tier: \(spec)")
        }
    }

    /// Resolves the `keyvault://` settings (encryption keys included), using `loop`'s client and
    /// credential. Completes on `loop` with the errors (empty: all resolved, or none to resolve).
    /// Call again for SIGHUP. `also`: settings of the proxy's own (the upstream password)
    /// resolved with them.
    public func resolveSecrets(on loop: EventLoop, also: [SecretSetting] = [], _ done: @escaping ([TierError]) -> Void) {
        let settings = [cosmosKey, blobKey, blobSAS].compactMap { $0 } + (cipher?.keys.settings ?? []) + also
        guard settings.contains(where: { $0.reference != nil }) else { done([]); return }
        let (http, credential) = loopResources(loop)
        let r = KeyVaultResolver(http: http, credential: credential)
        r.scheme = keyVaultScheme
        r.resolve(settings) { [cipher] errors in
            guard let keys = cipher?.keys else { done(errors); return }
            // A fetched key that is not 32 bytes of base64 is refused; the previous keys stay.
            do throws(TierError) { try keys.reload() } catch { done(errors + [error]); return }
            done(errors)
        }
    }
}
