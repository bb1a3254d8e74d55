import Synchronization
import Tiers

/// Which collections are read back (`DUMP`) after every write, and which only once per flush
/// (docs/semantics.md §13, "Big collections"). Reading back a 100 000-field hash after each
/// `HSET` costs megabytes per write; so a collection whose last serialised form was at least
/// `limit` bytes is *large*: a write to it captures only whether the key still exists
/// (`EXISTS`, O(1)), and its key is recorded in the key log as written. The write-behind
/// flusher then reads it once per flush, however many writes came meanwhile. Such a write is
/// written behind whatever the key's rule (write-through too: DESIGN's "write-behind for that
/// write", counted as `collection_writes_deferred`).
///
/// A key learns its size from its captures and flushes, so the first write to a large
/// collection after a start is still read back once. A write that left the key absent (the
/// last field deleted) is a delete as usual: exact, never deferred.
///
/// Shared by every loop.
final class CollectionCapture: @unchecked Sendable {
    /// 0: every write is read back.
    let limit: Int
    /// Bounds the memory of the two sets: beyond it the sizes are forgotten (captured again).
    static let maxTracked = 100_000
    private let large = Mutex<Set<TierKey>>([])
    /// Keys whose pending key-log mark comes from a deferred write that saw the key present, with
    /// the expiry it had then (nil: none). Should hot have lost one before its flush, the lower
    /// tiers keep the last state they hold rather than deleting it, unless it expired meanwhile
    /// (`lostBeforeFlush`).
    private let deferred = Mutex<[TierKey: Int64?]>([:])

    init(limit: Int) { self.limit = limit }

    /// True if a write of `key` (a collection command, whose capture is `DUMP`) is deferred.
    func defers(_ key: TierKey) -> Bool { limit > 0 && large.withLock { $0.contains(key) } }

    /// The size of the serialised state just read for `key` (a capture or a flush).
    func noteSize(_ key: TierKey, bytes: Int) {
        guard limit > 0 else { return }
        large.withLock { keys in
            if bytes < limit { keys.remove(key); return }
            if keys.count >= Self.maxTracked { keys.removeAll() }
            keys.insert(key)
        }
    }

    func markDeferred(_ key: TierKey, expiresAtMillis: Int64?) {
        deferred.withLock { keys in
            if keys.count >= Self.maxTracked { keys.removeAll() }
            keys[key] = .some(expiresAtMillis)
        }
    }

    /// The key's pending state is known again (captured, deleted, or recorded unverified).
    func clearDeferred(_ key: TierKey) {
        // Called on every write-behind write; almost always nothing is deferred: no hashing then.
        deferred.withLock { if !$0.isEmpty { $0.removeValue(forKey: key) } }
    }

    /// True if the flusher found `key` absent on hot although its last write was deferred and saw
    /// it present, with no expiry due by `now`: hot lost it behind the proxy's back (eviction,
    /// FLUSHALL on hot). The writes since its last flush are lost then, but what the lower
    /// tiers hold stays, rather than the whole collection. Clears the mark.
    func lostBeforeFlush(_ key: TierKey, now: Int64) -> Bool {
        guard let expiry = deferred.withLock({ $0.removeValue(forKey: key) }) else { return false }
        return expiry.map { $0 > now } ?? true
    }

    /// Splits a command's written keys into those read back now and those deferred.
    func split(_ written: [TierKey], capture: KeyCapture, hasKeyLog: Bool) -> (captured: [TierKey], deferred: [TierKey]) {
        guard capture == .dump, hasKeyLog, limit > 0 else { return (written, []) }
        var captured: [TierKey] = []
        var deferred: [TierKey] = []
        for k in written {
            if defers(k) { deferred.append(k) } else { captured.append(k) }
        }
        return (captured, deferred)
    }
}

/// Records the deferred keys a write left present (`CollectionCapture`): each is marked written
/// in the key log, so the flusher reads it from hot, then `then` runs (once the marks are
/// durable under `keylog-fsync always`). `writes`: the deferred writes these marks stand for
/// (several when a `KeyBatch` ran them in one transaction); one per key if nil.
enum DeferredWrite {
    static func record(_ keys: [(TierKey, Int64?)], writes: Int? = nil, access: TierAccess, then: @escaping () -> Void) {
        let core = access.core
        guard let log = core.keyLog, !keys.isEmpty else { then(); return }
        var remaining = keys.count
        core.stats.deferredCollectionWrites.add(writes ?? keys.count)
        for (key, expiry) in keys {
            core.generations.bump(key)
            // Captured state unknown: the flusher reads the collection from hot.
            core.collections.markDeferred(key, expiresAtMillis: expiry)
            log.markDirty(key, captured: .unknown, on: access.loop) { result in
                if case .failure(let e) = result { Log.warning("A written collection could not be recorded for its flush: \(e)") }
                remaining -= 1
                if remaining == 0 { then() }
            }
        }
    }
}
