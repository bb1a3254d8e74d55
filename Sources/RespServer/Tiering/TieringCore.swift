import Reactor
import Tiers
import Synchronization
import Glibc

/// What one key looks like in hot after a command: a string with its expiry, or nothing a lower
/// tier should hold (absent, expired, or another type, which is not tiered yet).
enum KeyState: Equatable {
    case value([UInt8], expiresAtMillis: Int64?)
    case absent

    var entry: Entry? {
        if case .value(let v, let e) = self { return Entry(value: v, expiresAtMillis: e) }
        return nil
    }
}

/// A lower-tier copy found by a lookup, and where.
struct Found {
    let entry: Entry
    let tier: LowerTier
}

/// The tiering state every loop shares (DESIGN "Semantics" 1, 3, 9, 10): placement rules, per-key
/// locks and generations, single-flight lookups, the negative cache, the durable key log of
/// write-behind keys and failed deletes, and the counters INFO reports.
final class TieringCore: @unchecked Sendable {
    let rules: PlacementRules
    let tierTimeoutMillis: Int
    let allowFlush: Bool
    let locks = KeyLocks()
    let generations = KeyGenerations()
    let negative: NegativeCache
    let flights = LookupFlights<Found?>()
    let scripts = ScriptFlags()
    let strictScripts: Bool
    /// Durable record of keys the lower tiers still owe (nil: it could not be opened; write-behind
    /// then answers errors, and failed deletes cannot be retried).
    let keyLog: KeyLog?
    /// The latest state of each write-behind key not yet flushed (keyed by the lock holder's
    /// writes, so it changes only under the key's lock). After a restart it is empty and the
    /// flusher reads hot instead.
    private let pendingStates = Mutex<[TierKey: KeyState]>([:])
    let stats = TieringStats()

    init(config: Config) {
        rules = PlacementRules(config.rules)
        tierTimeoutMillis = config.tierTimeoutMillis
        allowFlush = config.tiersAllowFlush
        strictScripts = config.tiersScriptsStrict
        negative = NegativeCache(generations: generations, ttlMillis: Int64(config.negativeCacheMillis))
        let path = config.dataDir + "/tierproxy-keylog.tpl"
        do {
            makeDirectories(config.dataDir)
            let log = try KeyLog(path: path)
            if log.recovery.pending > 0 {
                Log.notice("Key log \(path): \(log.recovery.pending) keys still owed to the lower tiers; flushing them")
            }
            keyLog = log
        } catch {
            Log.warning("Key log \(path) could not be opened (\(error)): write-behind and delete retries are off")
            keyLog = nil
        }
    }

    /// True if misses of `key` may look below hot, and writes of it reach the lower tiers.
    func isTiered(_ key: TierKey) -> Bool { rules.rule(for: key.bytes).policy != .hotOnly }

    func pendingState(_ key: TierKey) -> KeyState? { pendingStates.withLock { $0[key] } }
    func setPendingState(_ key: TierKey, _ state: KeyState?) { pendingStates.withLock { $0[key] = state } }
    func dropPendingStates(db: Int?) {
        pendingStates.withLock { states in
            if let db { states = states.filter { $0.key.db != db } } else { states.removeAll() }
        }
    }

    /// Loop 0's write-behind flusher, for its counters.
    weak var flusher: Flusher?

    /// The `# Tiers` fields of INFO (after the tier names), in order.
    func infoLines() -> [(String, String)] {
        var lines: [(String, String)] = [
            ("tier_timeout_ms", "\(tierTimeoutMillis)"),
            ("rules", "\(rules.rules.count)"),
            ("lookups", "\(stats.lookups.value)"),
            ("warm_hits", "\(stats.warmHits.value)"),
            ("cold_hits", "\(stats.coldHits.value)"),
            ("misses", "\(stats.misses.value)"),
            ("negative_cache_hits", "\(stats.negativeHits.value)"),
            ("promotions", "\(stats.promotions.value)"),
            ("lower_writes", "\(stats.lowerWrites.value)"),
            ("lower_deletes", "\(stats.lowerDeletes.value)"),
            ("lower_write_failures", "\(stats.lowerFailures.value)"),
            ("lower_read_errors", "\(stats.tierErrors.value)"),
            ("keys_locked", "\(locks.heldCount)"),
        ]
        if let log = keyLog {
            let b = log.backlog
            lines += [
                ("write_behind_backlog", "\(b.dirty)"),
                ("pending_deletes", "\(b.deletes)"),
                ("backlog_oldest_ms", "\(b.oldestAgeMillis)"),
                ("key_log_failure", log.writeFailure.map { "\($0)" } ?? "none"),
            ]
        } else {
            lines.append(("key_log_failure", "not open"))
        }
        if let c = flusher?.counters {
            lines += [("flushed", "\(c.flushed)"), ("flush_retries", "\(c.retries)"),
                      ("flush_failures", "\(c.failures)"), ("flushes_in_flight", "\(c.inFlight)")]
        }
        return lines
    }

    func close() { keyLog?.close() }
}

/// Counters for INFO's # Tiers section; updated from any loop.
final class TieringStats: @unchecked Sendable {
    let lookups = AtomicCounter()
    let warmHits = AtomicCounter()
    let coldHits = AtomicCounter()
    let misses = AtomicCounter()
    let negativeHits = AtomicCounter()
    let promotions = AtomicCounter()
    let lowerWrites = AtomicCounter()
    let lowerDeletes = AtomicCounter()
    let lowerFailures = AtomicCounter()
    let tierErrors = AtomicCounter()
}

/// `mkdir -p`: creates `path` and its missing parents (errors surface when the file is opened).
private func makeDirectories(_ path: String) {
    var prefix = path.hasPrefix("/") ? "/" : ""
    for part in path.split(separator: "/") {
        prefix += part + "/"
        mkdir(prefix, 0o755)
    }
}
