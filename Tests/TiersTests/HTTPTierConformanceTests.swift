import Reactor
import Testing
@testable import Tiers

/// The shared conformance suite on CosmosTier and BlobTier against the emulators.
@Suite struct HTTPTierConformance {
    /// Cosmos items hold at most 2 MB: the 5 MB scenario is the cold tier's (see `cosmosRefusesFiveMegabytes`).
    static let cosmosScenarios = TierConformance.scenarios.filter { $0.name != "5 MB value" }

    @Test(arguments: cosmosScenarios)
    func cosmos(_ scenario: TierScenario) throws { try Self.cosmos(scenario, cipher: nil) }

    @Test(arguments: TierConformance.scenarios)
    func blob(_ scenario: TierScenario) throws { try Self.blob(scenario, cipher: nil) }

    /// Runs `scenario` on a CosmosTier (sealing with `cipher` if given).
    static func cosmos(_ scenario: TierScenario, cipher: EntryCipher?) throws {
        let emu = try Emulators.sharedPrepared()
        var cfg = CosmosTierConfig(endpoint: emu.cosmos)
        cfg.cipher = cipher
        if scenario.ownStore {
            cfg.container = privateName()
            try emu.createCosmosContainer(cfg.container)
        }
        cfg.feedPageSize = 4  // purges page through the feed
        try TierConformance.run(scenario) { loop in
            try CosmosTier(loop: loop, config: cfg, auth: .sharedKey(SecretSetting(emu.cosmosKey)), http: HTTPClient.forLoop(loop))
        }
    }

    /// Runs `scenario` on a BlobTier (sealing with `cipher` if given).
    static func blob(_ scenario: TierScenario, cipher: EntryCipher?) throws {
        let emu = try Emulators.sharedPrepared()
        var cfg = BlobTierConfig(accountURL: emu.blob)
        cfg.cipher = cipher
        if scenario.ownStore {
            cfg.container = privateName()
            try emu.createBlobContainer(cfg.container)
        }
        // Small limits so the 5 MB scenario goes up in blocks and compressed, and purges page.
        cfg.singlePutLimit = 1 << 20
        cfg.blockSize = 256 << 10
        cfg.compressThreshold = 64 << 10
        cfg.listPageSize = 4
        try TierConformance.run(scenario) { loop in
            BlobTier(loop: loop, config: cfg, auth: .sharedKey(SecretSetting(emu.blobKey)), http: HTTPClient.forLoop(loop))
        }
    }

    /// A container name valid for both services and unused in this emulator process.
    static func privateName() -> String { "own-\(UInt32.random(in: 0...UInt32.max))" }

    @Test func cosmosRefusesFiveMegabytes() throws {
        let emu = try Emulators.sharedPrepared()
        let harness = LoopHarness()
        let r: Result<Void, TierError> = try harness.wait("put") { done in
            do {
                let tier = try CosmosTier(loop: harness.loop, config: CosmosTierConfig(endpoint: emu.cosmos),
                                          auth: .sharedKey(SecretSetting(emu.cosmosKey)), http: HTTPClient.forLoop(harness.loop))
                tier.put(TierKey("five-mb"), Entry(value: TierConformance.bigValue(5_000_000))) { r in _ = tier; done(r) }
            } catch { done(.failure(error as! TierError)) }
        }
        guard case .failure(let e) = r else { Issue.record("5 MB stored in Cosmos"); return }
        #expect(e == .tooLarge(limit: 2 * 1024 * 1024))
    }
}
