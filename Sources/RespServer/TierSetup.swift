import Reactor
import Tiers

/// The configured warm and cold tiers: resolved once from the conf/env, then built on each loop
/// (each loop gets its own HTTP client and credential; SQLite and directory tiers are shared).
final class TierSetup {
    let config: TierConfig
    /// Seals lower-tier entries when `tier-encryption-key` is set.
    let cipher: EntryCipher?
    /// The upstream's credential (its Key Vault password is resolved with the tiers' secrets).
    let upstreamCredential: UpstreamCredential
    private let remote: RemoteTierMaker
    private let factory: TierFactory

    init(config: Config, environment: [String: String]) throws {
        upstreamCredential = UpstreamCredential(config: config)
        do {
            let c = try TierSetup.resolve(config: config, environment: environment)
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

    /// The tier settings from the conf and env, parsed (nothing is opened or contacted).
    static func resolve(config: Config, environment: [String: String]) throws -> TierConfig {
        do {
            var c = try TierConfig.resolve(warm: config.warm.isEmpty ? nil : config.warm,
                                           cold: config.cold.isEmpty ? nil : config.cold,
                                           dataDir: config.dataDir, environment: environment)
            c.compressThreshold = config.compressThreshold
            return c
        } catch let e as TierError {
            throw ConfigError("tiers: \(e)")
        }
    }

    /// This loop's tiers; call on the loop's own thread.
    func tiers(for loop: EventLoop) throws -> (warm: Tier?, cold: Tier?) {
        do { return try factory.tiers(for: loop) } catch let e as TierError { throw ConfigError("tiers: \(e)") }
    }

    /// Resolves `keyvault://` secrets (at start, and again on SIGHUP), the upstream password's
    /// among them; completes on `loop`.
    func resolveSecrets(on loop: EventLoop, _ done: @escaping ([TierError]) -> Void) {
        let upstream = upstreamCredential
        remote.resolveSecrets(on: loop, also: upstream.password.map { [$0] } ?? []) { errors in
            upstream.passwordResolved(error: errors.isEmpty ? nil : errors.map { "\($0)" }.joined(separator: "; "))
            done(errors)
        }
    }

    func close() { factory.close() }
}
