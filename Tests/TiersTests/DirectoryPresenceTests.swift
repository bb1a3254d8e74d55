import Glibc
import Reactor
import Testing
@testable import Tiers

/// `DirectoryTier.mayHold`: "no" must be exact (a write-through skips its delete on it, and a
/// stale file would then come back), "yes" may be wrong.
@Suite struct DirectoryPresence {
    @Test func aNewTierKnowsItHoldsNothingButWhatItWasGiven() throws {
        let dir = try TempDir()
        let harness = LoopHarness()
        let store = try DirectoryTier(path: dir.path + "/cold", sync: .none)
        defer { store.close() }
        let tier = store.tier(for: harness.loop)
        let key = TierKey(db: 3, "fresh")
        #expect(!tier.mayHold(key))
        try harness.wait("put") { tier.put(key, Entry(value: [1]), $0) }.get()
        #expect(tier.mayHold(key))
        // A delete does not make it "no" again: the filter only grows.
        try harness.wait("delete") { tier.delete(key, $0) }.get()
        #expect(tier.mayHold(key))
        #expect(!tier.mayHold(TierKey(db: 0, "fresh")), "another db is another name")
    }

    @Test func aTierOpenedOnOldFilesSaysYesForEachOfThem() throws {
        let dir = try TempDir()
        let harness = LoopHarness()
        let keys = (0..<300).map { TierKey(db: $0 % 3, "old:\($0)") } + [TierKey(db: 0, Array(repeating: 0xff, count: 400))]
        do {
            let first = try DirectoryTier(path: dir.path, sync: .none)
            let tier = first.tier(for: harness.loop)
            for key in keys { try harness.wait("put") { tier.put(key, Entry(value: [2]), $0) }.get() }
            first.close()
        }
        let store = try DirectoryTier(path: dir.path, sync: .none)
        defer { store.close() }
        for _ in 0..<20_000 where !store.presence.isReady { usleep(1000) }  // up to 20 s
        #expect(store.presence.isReady, "the walk of the old files did not finish")
        for key in keys { #expect(store.mayHold(key), "\(key.db)/\(key.bytes.count) bytes") }
        let fresh = (0..<300).filter { !store.mayHold(TierKey("new:\($0)")) }.count
        #expect(fresh > 290, "a filter this empty says yes to almost nothing it was not given (\(fresh)/300)")
    }

    @Test func filterAnswersYesUntilReady() {
        let filter = PresenceFilter(bits: 1024)
        #expect(filter.mayContain(42))
        filter.markReady()
        #expect(!filter.mayContain(42))
        filter.insert(42)
        #expect(filter.mayContain(42))
    }
}
