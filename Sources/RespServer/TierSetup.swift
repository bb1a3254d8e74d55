import Reactor
import Tiers

/// The configured warm and cold tiers: resolved once from the conf/env, then built on each loop
/// (each loop gets its own HTTP client and credential; SQLite and directory tiers are shared).
final class TierSetup {
    let config: TierConfig
    /// Seals lower-tier entries when `tier-encryption-key` is set.
    let cipher: EntryCipher?
    private let remote: RemoteTierMaker
    private let factory: TierFactory

    init(config: Config, environment: [String: String]) throws {
        do {
            var c = try TierConfig.resolve(warm: config.warm.isEmpty ? nil : config.warm,
                                           cold: config.cold.isEmpty ? nil : config.cold,
                                           dataDir: config.dataDir, environment: environment)
            c.compressThreshold = config.compressThreshold
            self.config = c
            cipher = config.tierEncryptionKey.isEmpty ? nil
                : EntryCipher(keys: try EncryptionKeys(current: config.tierEncryptionKey, old: config.tierEncryptionOldKeys))
            var http = HTTPClientOptions()
            if !config.tierTLSCaCertFile.isEmpty { http.caBundlePath = config.tierTLSCaCertFile }
            remote = RemoteTierMaker(config: c, httpOptions: http, cipher: cipher)
            factory = try TierFactory(config: c, remote: remote.maker, cipher: cipher)
        } catch let e as TierError {
            throw ConfigError("tiers: \(e)")
        }
    }

    /// This loop's tiers; call on the loop's own thread.
    func tiers(for loop: EventLoop) throws -> (warm: Tier?, cold: Tier?) {
        do { return try factory.tiers(for: loop) } catch let e as TierError { throw ConfigError("tiers: \(e)") }
    }

    /// Resolves `keyvault://` secrets (at start, and again on SIGHUP); completes on `loop`.
    func resolveSecrets(on loop: EventLoop, _ done: @escaping ([TierError]) -> Void) {
        remote.resolveSecrets(on: loop, done)
    }

    func close() { factory.close() }
}
