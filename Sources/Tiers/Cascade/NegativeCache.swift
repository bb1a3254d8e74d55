import Synchronization

/// Remembers briefly which keys were absent in every tier, so a storm of misses on a key nobody
/// stored asks the lower tiers once per `ttlMillis` (docs/semantics.md §1). Shared by all loops;
/// it is consulted only after hot answered nil, never on a hit.
///
/// Each entry keeps the key's `KeyGeneration` from before the lookup that found it absent, and
/// counts only while the key's generation is unchanged: a write or delete through any loop
/// (`KeyGenerations.bump`/`beginWrite`) makes the key not-absent at once. Writes made around the
/// proxy (another instance, directly on a tier) are seen after at most `ttlMillis`.
///
/// Bounded: at `capacity` entries the oldest is dropped. All entries live equally long, so the
/// oldest is also the first to expire, and one queue in insertion order serves both.
public final class NegativeCache: @unchecked Sendable {
    /// Changeable at runtime (`TIERS CONFIG SET negative-cache-ms`); new records use the new value.
    public var ttlMillis: Int64 {
        get { ttl.load(ordering: .relaxed) }
        set { ttl.store(newValue, ordering: .relaxed) }
    }
    private let ttl: Atomic<Int64>
    public let capacity: Int
    private let generations: KeyGenerations
    private let state = Mutex(State())

    private struct Record {
        let generation: KeyGeneration
        let expiresAt: Int64
        let serial: UInt64
    }

    private struct State {
        var records = [TierKey: Record]()
        /// Keys in insertion order with the serial they were inserted under; a key re-inserted
        /// later leaves a stale element here, skipped when it reaches the front.
        var order = [(key: TierKey, serial: UInt64)]()
        var head = 0
        var nextSerial: UInt64 = 0

        /// True if `element` is the current, unexpired entry of its key.
        func isLive(_ element: (key: TierKey, serial: UInt64), now: Int64) -> Bool {
            guard let r = records[element.key] else { return false }
            return r.serial == element.serial && r.expiresAt > now
        }

        mutating func dropOldest() {
            let (key, serial) = order[head]
            head += 1
            if records[key]?.serial == serial { records[key] = nil }
            if head > 1024 && head * 2 > order.count {   // reclaim the consumed front now and then
                order.removeFirst(head)
                head = 0
            }
        }
    }

    public init(generations: KeyGenerations, capacity: Int = 65_536, ttlMillis: Int64 = 1_000) {
        self.generations = generations
        self.capacity = max(capacity, 1)
        self.ttl = Atomic(ttlMillis)
    }

    /// Records that `key` was absent everywhere, found by a lookup that began at `generation`.
    /// Ignored if the key was written since (or while) that lookup ran. `now`: Unix milliseconds,
    /// e.g. the loop's `nowMillis`.
    public func rememberAbsent(_ key: TierKey, since generation: KeyGeneration, now: Int64) {
        let ttlMillis = self.ttlMillis
        guard ttlMillis > 0, generations.unchanged(since: generation) else { return }
        state.withLock { s in
            while s.head < s.order.count && !s.isLive(s.order[s.head], now: now) { s.dropOldest() }
            while s.records.count >= capacity && s.records[key] == nil { s.dropOldest() }
            s.nextSerial += 1
            s.records[key] = Record(generation: generation, expiresAt: now + ttlMillis, serial: s.nextSerial)
            s.order.append((key, s.nextSerial))
            if s.order.count - s.head > 2 * capacity {   // many re-inserts behind a live front
                s.order = s.order[s.head...].filter { s.isLive($0, now: now) }
                s.head = 0
            }
        }
    }

    /// True if `key` was found absent everywhere less than `ttlMillis` ago and has not been
    /// written since: the caller may answer nil without asking the lower tiers.
    /// Forgets every entry (the databases it speaks of were swapped).
    public func removeAll() { state.withLock { $0 = State() } }

    public func isKnownAbsent(_ key: TierKey, now: Int64) -> Bool {
        state.withLock { s in
            guard let r = s.records[key] else { return false }
            if r.expiresAt > now && generations.unchanged(since: r.generation) { return true }
            s.records[key] = nil   // its element in `order` is now stale
            return false
        }
    }

    /// Entries held (some may have expired and not yet been dropped).
    public var count: Int { state.withLock { $0.records.count } }
}
