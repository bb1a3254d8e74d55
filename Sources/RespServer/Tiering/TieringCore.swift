import Reactor
import Tiers
import Synchronization
import Glibc

/// What one key looks like in hot after a command: a value of some type with its expiry (a
/// string's bytes, or another type's `DUMP` payload: `KeyCapture`), or nothing a lower tier
/// should hold (absent, expired, or a module's type, which stays in hot).
enum KeyState: Equatable {
    case value([UInt8], type: ValueType, expiresAtMillis: Int64?)
    case absent

    var entry: Entry? {
        if case .value(let v, let t, let e) = self { return Entry(value: v, type: t, expiresAtMillis: e) }
        return nil
    }
}

extension KeyState {
    /// The state a key log entry captured; nil when only hot knows it.
    init?(_ captured: KeyLog.Captured) {
        switch captured {
        case .unknown: return nil
        case .absent: self = .absent
        case .value(let e): self = .value(e.value, type: e.type, expiresAtMillis: e.expiresAtMillis)
        }
    }
}

extension KeyLog.Captured {
    init(_ state: KeyState?) {
        switch state {
        case nil: self = .unknown
        case .absent?: self = .absent
        case .value(let v, let t, let e)?: self = .value(Entry(value: v, type: t, expiresAtMillis: e))
        }
    }
}

/// A lower-tier copy found by a lookup, and where.
struct Found {
    let entry: Entry
    let tier: LowerTier
}

/// The tiering state every loop shares (docs/semantics.md §1, 3, 9, 10): placement rules, per-key
/// locks and generations, single-flight lookups, the negative cache, the durable key log of
/// write-behind keys and failed deletes, and the counters INFO reports.
final class TieringCore: @unchecked Sendable {
    /// The placement rules now in force (`TIERS CONFIG SET rules` swaps them at runtime).
    var rules: PlacementRules { settings.rules }
    /// Milliseconds a tier operation may take (runtime: `TIERS CONFIG SET tier-timeout`).
    var tierTimeoutMillis: Int { settings.tierTimeoutMillis }
    /// The settings `TIERS CONFIG SET` may change while clients run (read lock-free).
    let settings: RuntimeSettings
    let allowFlush: Bool
    let locks = KeyLocks()
    let generations = KeyGenerations()
    let negative: NegativeCache
    let flights = LookupFlights<Found?>()
    let scripts = ScriptFlags()
    let absentBelow = AbsentBelow()
    /// Which RDB versions hot can RESTORE, learned as copies of them are found below.
    let rdbVersions = RDBVersions()
    let strictScripts: Bool
    /// Durable record of keys the lower tiers still owe (nil: it could not be opened; write-behind
    /// then answers errors, and failed deletes cannot be retried).
    let keyLog: KeyLog?
    let stats = TieringStats()
    let collections: CollectionCapture
    /// Writes of one key waiting on its lock, gathered to run as one transaction (`KeyBatch`).
    let batches = KeyBatches()
    /// Where the lower tiers keep each Redis database (nil: its file could not be read; SWAPDB is
    /// then refused).
    let databases: DatabaseMap?
    /// Keys a blocking command may delete (BLPOP of a list's last element …), counted from the
    /// moment it is sent until what it did is below (`BlockingMark`).
    private let blockingDeletes = Mutex<[TierKey: Int]>([:])
    /// Closed while a SWAPDB waits for tiered commands and the write-behind backlog to drain.
    private let swapGate = Mutex<(closed: Bool, waiting: [(EventLoop, () -> Void)])>((false, []))

    init(config: Config) {
        settings = RuntimeSettings(config)
        allowFlush = config.tiersAllowFlush
        strictScripts = config.tiersScriptsStrict
        collections = CollectionCapture(limit: config.collectionCaptureLimit)
        negative = NegativeCache(generations: generations, ttlMillis: Int64(config.negativeCacheMillis))
        settings.negative = negative
        let path = config.dataDir + "/tierproxy-keylog.tpl"
        makeDirectories(config.dataDir)
        do {
            databases = try DatabaseMap(path: config.dataDir + "/tierproxy-dbmap")
        } catch {
            Log.warning("Database map could not be read (\(error)): SWAPDB is refused")
            databases = nil
        }
        do {
            var options = KeyLog.Options()
            options.sync = config.keyLogSync
            let log = try KeyLog(path: path, options: options)
            if log.recovery.pending > 0 {
                Log.notice("Key log \(path): \(log.recovery.pending) keys still owed to the lower tiers; flushing them")
            }
            keyLog = log
        } catch {
            Log.warning("Key log \(path) could not be opened (\(error)): write-behind and delete retries are off")
            keyLog = nil
        }
    }

    // MARK: - SWAPDB

    var swapping: Bool { swapGate.withLock { $0.closed } }

    /// Runs `then` on `loop` once no SWAPDB is under way (at once if none is).
    func whenNotSwapping(on loop: EventLoop, _ then: @escaping () -> Void) {
        let now: Bool = swapGate.withLock { gate in
            if !gate.closed { return true }
            gate.waiting.append((loop, then))
            return false
        }
        if now { then() }
    }

    /// Closes the gate; false if another SWAPDB holds it.
    func beginSwap() -> Bool { swapGate.withLock { gate in gate.closed ? false : { gate.closed = true; return true }() } }

    func endSwap() {
        let waiting = swapGate.withLock { gate -> [(EventLoop, () -> Void)] in
            gate.closed = false
            defer { gate.waiting = [] }
            return gate.waiting
        }
        for (loop, then) in waiting { loop.execute(then) }
    }

    // MARK: - Blocking commands in flight

    func markBlockingDeletes(_ keys: [TierKey]) {
        blockingDeletes.withLock { counts in for k in keys { counts[k, default: 0] += 1 } }
    }

    func unmarkBlockingDeletes(_ keys: [TierKey]) {
        blockingDeletes.withLock { counts in
            for k in keys {
                let n = (counts[k] ?? 1) - 1
                counts[k] = n > 0 ? n : nil
            }
        }
    }

    /// True if a blocking command that may delete `key` is on hot and what it did is not below
    /// yet: hot lacking the key may mean it popped the last element, so what is below is older.
    func mayBeDeletedByBlocking(_ key: TierKey) -> Bool { blockingDeletes.withLock { $0[key] != nil } }

    /// True if misses of `key` may look below hot, and writes of it reach the lower tiers.
    func isTiered(_ key: TierKey) -> Bool { rules.rule(for: key.bytes).policy != .hotOnly }

    // MARK: - Write-behind states
    //
    // The latest state of each key the lower tiers still owe lives in its key log entry (one
    // record per key: `KeyLog.Captured`), written under the key's lock. After a restart the
    // states are unknown and the flusher reads hot instead.

    /// The state the latest unflushed write of `key` left, if known.
    func pendingState(_ key: TierKey) -> KeyState? { keyLog?.pendingState(key).flatMap { KeyState($0.captured) } }

    /// Records in the key log that `key` was written (`op` dirty) or deleted, with the state the
    /// write left (nil: only hot knows it, and the flusher reads it there). The key log must be open.
    func mark(_ key: TierKey, _ op: KeyLog.Op, _ state: KeyState?, on loop: EventLoop,
              _ done: @escaping (Result<Void, TierError>) -> Void) {
        collections.clearDeferred(key)
        switch op {
        case .delete: keyLog!.markDeleted(key, on: loop, done)
        case .dirty: keyLog!.markDirty(key, captured: KeyLog.Captured(state), on: loop, done)
        }
    }

    /// `mark` for a write-behind state when marks complete at once (`KeyLog.marksAtOnce`): nil,
    /// or why the mark was refused.
    func markNow(_ key: TierKey, _ state: KeyState, on loop: EventLoop) -> TierError? {
        collections.clearDeferred(key)
        return keyLog!.markNow(key, state.entry == nil ? .delete : .dirty, captured: KeyLog.Captured(state), on: loop)
    }

    /// FLUSHDB/FLUSHALL on hot: the captured states of `db` (nil: every db) are stale.
    func dropPendingStates(db: Int?) { keyLog?.forgetCaptured(db: db) }

    /// Loop 0's write-behind flusher, for its counters.
    weak var flusher: Flusher?

    /// The `# Tiers` fields of INFO that the cascade itself keeps (after the tier names), in
    /// order; counters come from `totals` (since the last `TIERS RESETSTAT`).
    func infoLines(_ totals: Totals) -> [(String, String)] {
        var lines: [(String, String)] = [
            ("tier_timeout_ms", "\(tierTimeoutMillis)"),
            ("rules", "\(rules.rules.count)"),
        ]
        lines += ["lookups", "warm_hits", "cold_hits", "misses", "negative_cache_hits", "promotions", "lower_writes",
                  "lower_deletes", "lower_write_failures", "write_through_fallbacks", "lower_read_errors", "collection_writes_deferred"].map { ($0, "\(totals.tiering($0))") }
        lines.append(("keys_locked", "\(locks.heldCount)"))
        if let log = keyLog {
            let b = log.backlog
            let st = log.stats
            lines += [
                ("key_log_appends", "\(st.appends)"),
                ("key_log_unwritten", "\(st.appends - st.written)"),
                ("key_log_syncs", "\(st.syncs)"),
                ("key_log_fsync", log.options.sync.rawValue),
                ("key_log_compactions", "\(st.compactions)"),
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
    /// Write-through writes a lower tier did not take, recorded in the key log instead.
    let writeThroughFallbacks = AtomicCounter()
    /// Writes of large collections read once per flush instead of after the write (`CollectionCapture`).
    let deferredCollectionWrites = AtomicCounter()

    /// Every counter with its INFO field name, for /metrics and `TIERS RESETSTAT`.
    var all: [(String, AtomicCounter)] {
        [("lookups", lookups), ("warm_hits", warmHits), ("cold_hits", coldHits), ("misses", misses),
         ("negative_cache_hits", negativeHits), ("promotions", promotions), ("lower_writes", lowerWrites),
         ("lower_deletes", lowerDeletes), ("lower_write_failures", lowerFailures),
         ("write_through_fallbacks", writeThroughFallbacks), ("lower_read_errors", tierErrors),
         ("collection_writes_deferred", deferredCollectionWrites)]
    }
}

/// `mkdir -p`: creates `path` and its missing parents (errors surface when the file is opened).
private func makeDirectories(_ path: String) {
    var prefix = path.hasPrefix("/") ? "/" : ""
    for part in path.split(separator: "/") {
        prefix += part + "/"
        mkdir(prefix, 0o755)
    }
}
