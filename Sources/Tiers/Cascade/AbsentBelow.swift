import Synchronization

/// Which keys this process knows one lower tier does not hold: it deleted them there (under the
/// key's lock), or a lookup under the key's lock read every tier and found nothing, and nothing
/// of this process has written them there since. Other lookups teach it nothing: one without
/// the lock may have begun before a write.
/// A write-through that puts a key in one tier skips the delete in the other when that tier is
/// known not to hold it (docs/semantics.md "Writes": the delete is one request per write on
/// Cosmos DB or Blob Storage). Shared by every loop; bounded: when a tier's set is full it is
/// emptied, which only costs deletes that were not needed.
///
/// Another tierproxy instance writing the same lower tiers is not seen: with several instances
/// and rules that place one key in different tiers, turn it off (`capacity` 0).
public final class AbsentBelow: @unchecked Sendable {
    public let capacity: Int
    private let sets = Mutex<[LowerTier: Set<TierKey>]>([:])

    public init(capacity: Int = 500_000) { self.capacity = capacity }

    public func isKnownAbsent(_ key: TierKey, in tier: LowerTier) -> Bool {
        sets.withLock { $0[tier]?.contains(key) ?? false }
    }

    /// `key` is not in `tier` now (deleted there, with its lock held).
    public func noteAbsent(_ key: TierKey, in tier: LowerTier) {
        guard capacity > 0 else { return }
        sets.withLock { sets in
            if sets[tier, default: []].count >= capacity { sets[tier] = [] }
            sets[tier, default: []].insert(key)
        }
    }

    /// `key` may be in `tier` from now on (about to be written there).
    public func notePresent(_ key: TierKey, in tier: LowerTier) {
        sets.withLock { _ = $0[tier]?.remove(key) }
    }

    /// Forgets everything (a purge, a database swap).
    public func reset() { sets.withLock { $0 = [:] } }
}
