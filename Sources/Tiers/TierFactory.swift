import Reactor

/// Turns a `TierConfig` into tiers, per loop.
///
/// How it works: `init` opens the embedded tiers (SQLite file, directory) once, so a bad path
/// fails at startup, and those are shared by every loop. Remote tiers (Cosmos, Blob) are per
/// loop (one curl multi handle each); for them `tiers(for:)` calls `remote`, the hook the HTTP
/// side supplies, e.g.
///
///     let factory = try TierFactory(config: config) { spec, loop throws(TierError) in
///         switch spec {
///         case .cosmos(let c): return try CosmosTier(c, loop: loop)
///         case .blob(let b): return try BlobTier(b, loop: loop)
///         default: throw .failed("not a remote tier: \(spec)")
///         }
///     }
///     // on each loop's thread, at start:
///     let (warm, cold) = try factory.tiers(for: loop)
public final class TierFactory {
    /// Makes the tier for a remote spec (`.cosmos`, `.blob`) whose completions run on `loop`.
    public typealias RemoteMaker = (_ spec: TierSpec, _ loop: EventLoop) throws(TierError) -> Tier

    public let config: TierConfig
    /// Seals every entry the embedded tiers write (`tier-encryption-key`); nil: in clear.
    public let cipher: EntryCipher?
    private let remote: RemoteMaker?
    private let sharedWarm: SharedTier?
    private let sharedCold: SharedTier?

    public init(config: TierConfig, remote: RemoteMaker? = nil, cipher: EntryCipher? = nil) throws(TierError) {
        self.config = config
        self.remote = remote
        self.cipher = cipher
        sharedWarm = try Self.openLocal(config.warm, config, cipher)
        do throws(TierError) {
            sharedCold = try Self.openLocal(config.cold, config, cipher)
        } catch {
            (sharedWarm as? SQLiteTier)?.close()
            throw error
        }
        for spec in [config.warm, config.cold] where Self.isRemote(spec) && remote == nil {
            throw .failed("\(spec) is configured but this build has no HTTP tiers registered")
        }
    }

    /// The warm and cold tier for `loop` (nil where configured `none`). Call once per loop.
    public func tiers(for loop: EventLoop) throws(TierError) -> (warm: Tier?, cold: Tier?) {
        (try tier(config.warm, sharedWarm, loop), try tier(config.cold, sharedCold, loop))
    }

    /// Finishes queued work of the embedded tiers and closes them.
    public func close() {
        (sharedWarm as? SQLiteTier)?.close()
        (sharedCold as? DirectoryTier)?.close()
    }

    private func tier(_ spec: TierSpec, _ shared: SharedTier?, _ loop: EventLoop) throws(TierError) -> Tier? {
        if let shared { return shared.tier(for: loop) }
        guard Self.isRemote(spec) else { return nil }
        guard let remote else { throw .failed("\(spec): no HTTP tiers registered") }
        return try remote(spec, loop)
    }

    private static func isRemote(_ spec: TierSpec) -> Bool {
        switch spec {
        case .cosmos, .blob: return true
        default: return false
        }
    }

    private static func openLocal(_ spec: TierSpec, _ config: TierConfig, _ cipher: EntryCipher?) throws(TierError) -> SharedTier? {
        switch spec {
        case .sqlite(let path):
            try FileOps.makeDirectories(FileOps.parent(of: path))
            return try SQLiteTier(path: path, cipher: cipher)
        case .directory(let path):
            return try DirectoryTier(path: path, compressThreshold: config.compressThreshold, sync: config.directorySync,
                                     cipher: cipher)
        default:
            return nil
        }
    }
}
