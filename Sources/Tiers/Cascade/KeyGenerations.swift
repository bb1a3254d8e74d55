import Synchronization

/// Per-key write generations shared by every loop (docs/semantics.md §9): what lets a lookup that
/// began before a write know, before it promotes or caches what it found, that the write happened.
///
/// A fixed table of atomic words indexed by a hash of db + key. Keys that share a slot share a
/// generation: a write to one makes the others look changed too, which only costs a skipped
/// promotion or negative-cache entry (the key is read below again next time), never a stale value.
///
/// Each word packs a generation (high bits) and the number of writes in progress (low 20 bits).
/// A write-through write spans hot and the lower tiers; a lookup that overlaps any part of it
/// (hot already changed, warm not yet) may have read the older lower-tier value, so:
///   - `beginWrite` before the write is sent to hot; `endWrite` when every tier has acknowledged
///     (or failed). `bump` is both at once, for a change that is already complete.
///   - `snapshot` before the lookup starts; `unchanged(since:)` before promoting, caching "absent",
///     or sharing a lookup: true only if no write was in progress at the snapshot and none began
///     or ended since.
public final class KeyGenerations: @unchecked Sendable {
    private let words: UnsafeMutablePointer<Atomic<UInt64>>
    private let mask: Int

    private static let inProgressBits: UInt64 = 20
    private static let inProgressMask: UInt64 = (1 << inProgressBits) - 1
    private static let oneGeneration: UInt64 = 1 << inProgressBits

    /// `slots` is rounded up to a power of two.
    public init(slots: Int = 65_536) {
        var n = 1
        while n < max(slots, 1) { n <<= 1 }
        mask = n - 1
        words = .allocate(capacity: n)
        for i in 0..<n { (words + i).initialize(to: Atomic(0)) }
    }

    deinit {
        words.deinitialize(count: mask + 1)
        words.deallocate()
    }

    /// Records a write or delete of `key` that is already complete (or that no lookup can straddle).
    public func bump(_ key: TierKey) {
        words[slot(key)].wrappingAdd(Self.oneGeneration, ordering: .acquiringAndReleasing)
    }

    /// Marks a write of `key` as started; pass the result to `endWrite` exactly once.
    public func beginWrite(_ key: TierKey) -> PendingWrite {
        let s = slot(key)
        words[s].wrappingAdd(Self.oneGeneration + 1, ordering: .acquiringAndReleasing)
        return PendingWrite(slot: s)
    }

    /// Marks the write as finished, whether it succeeded or not.
    public func endWrite(_ write: PendingWrite) {
        words[write.slot].wrappingAdd(Self.oneGeneration - 1, ordering: .acquiringAndReleasing)
    }

    /// The generation of `key` now; take it before asking a lower tier.
    public func snapshot(_ key: TierKey) -> KeyGeneration {
        let s = slot(key)
        return KeyGeneration(slot: s, word: words[s].load(ordering: .acquiring))
    }

    /// True if no write of a key in the snapshot's slot was in progress when it was taken, and
    /// none began or ended since.
    public func unchanged(since snapshot: KeyGeneration) -> Bool {
        snapshot.writeInProgress == false && words[snapshot.slot].load(ordering: .acquiring) == snapshot.word
    }

    /// The slot of `key`: FNV-1a over the db and the key's bytes, finished with a 64-bit mix so
    /// that similar keys (`user:1`, `user:2`) spread over the whole table.
    func slot(_ key: TierKey) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        let prime: UInt64 = 0x0000_0100_0000_01b3
        var db = UInt64(truncatingIfNeeded: key.db)
        for _ in 0..<8 {
            h = (h ^ (db & 0xff)) &* prime
            db >>= 8
        }
        for b in key.bytes { h = (h ^ UInt64(b)) &* prime }
        h ^= h >> 33
        h = h &* 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        return Int(truncatingIfNeeded: h) & mask
    }

    fileprivate static func inProgress(_ word: UInt64) -> Bool { word & inProgressMask != 0 }
}

/// A key's generation at one moment (from `KeyGenerations.snapshot`).
public struct KeyGeneration: Equatable, Hashable, Sendable {
    let slot: Int
    let word: UInt64
    /// True if a write of a key in this slot was under way when the snapshot was taken: nothing
    /// read under this snapshot may be promoted or cached.
    public var writeInProgress: Bool { KeyGenerations.inProgress(word) }
}

/// A write between `KeyGenerations.beginWrite` and `endWrite`.
public struct PendingWrite: Sendable {
    let slot: Int
}
