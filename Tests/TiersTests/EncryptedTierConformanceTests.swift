import Reactor
import Testing
@testable import Tiers

/// The shared conformance suite again with `tier-encryption-key` set, on every backend: sealing
/// changes nothing a caller can see (expiry, databases, binary keys, purges, large gzip values).
@Suite struct EncryptedTierConformance {
    static let cipher = EntryCipher(keys: try! EncryptionKeys(current: EntryCipherTests.keyA, old: []))

    @Test(arguments: TierConformance.scenarios)
    func sqlite(_ scenario: TierScenario) throws {
        let dir = try TempDir()
        let store = try SQLiteTier(path: dir.path + "/warm.db", cipher: Self.cipher)
        defer { store.close() }
        try TierConformance.run(scenario) { loop in store.tier(for: loop) }
    }

    @Test(arguments: TierConformance.scenarios)
    func directory(_ scenario: TierScenario) throws {
        let dir = try TempDir()
        let store = try DirectoryTier(path: dir.path + "/cold", compressThreshold: 64 << 10, cipher: Self.cipher)
        defer { store.close() }
        try TierConformance.run(scenario) { loop in store.tier(for: loop) }
    }

    @Test(arguments: HTTPTierConformance.cosmosScenarios)
    func cosmos(_ scenario: TierScenario) throws { try HTTPTierConformance.cosmos(scenario, cipher: Self.cipher) }

    @Test(arguments: TierConformance.scenarios)
    func blob(_ scenario: TierScenario) throws { try HTTPTierConformance.blob(scenario, cipher: Self.cipher) }
}
