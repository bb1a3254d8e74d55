import Testing
@testable import Tiers

@Suite struct CascadeRulesTests {
    private func rule(_ line: String) throws -> PlacementRule {
        try PlacementRule(arguments: line.split(separator: " ").map(String.init))
    }

    private func error(_ line: String) -> String? {
        do { _ = try rule(line); return nil } catch { return "\(error)" }
    }

    /// The seed library's presets, as `PlacementRule`'s doc comment shows them.
    private func seedPresets() throws -> PlacementRules {
        PlacementRules([
            try rule("session:* policy hot-only ttl 300"),
            try rule("profile:* policy write-through tier warm"),
            try rule("catalog:* policy write-through tier cold"),
        ])
    }

    @Test func parsesEveryOptionInAnyOrderAndCase() throws {
        let r = try rule("user:[0-9]* TIER cold ttl 60 Policy Write-Behind")
        #expect(r == PlacementRule(pattern: GlobPattern("user:[0-9]*"), policy: .writeBehind, ttlSeconds: 60, tier: .cold))
        #expect(try rule("x policy write-through") == PlacementRule(pattern: GlobPattern("x"), policy: .writeThrough))
        #expect(try rule("x policy hot-only").readsLowerTiers == false)
        #expect(try rule("x policy write-behind").readsLowerTiers)
    }

    @Test func errorsNameTheBadWord() {
        #expect(error("")?.contains("needs a pattern") == true)
        #expect(error("k:*")?.contains("'policy' is required") == true)
        #expect(error("k:* policy write-thru")?.contains("'write-thru'") == true)
        #expect(error("k:* policy hot-only tire warm")?.contains("unknown word 'tire'") == true)
        #expect(error("k:* policy hot-only ttl")?.contains("'ttl' needs a value") == true)
        #expect(error("k:* policy hot-only ttl 5m")?.contains("ttl '5m'") == true)
        #expect(error("k:* policy hot-only ttl 0")?.contains("ttl '0'") == true)
        #expect(error("k:* policy hot-only ttl -3")?.contains("ttl '-3'") == true)
        #expect(error("k:* policy write-through tier lukewarm")?.contains("'lukewarm'") == true)
        #expect(error("k:* policy write-through policy hot-only")?.contains("'policy' given twice") == true)
        #expect(error("k:* policy hot-only tier cold")?.contains("contradicts 'policy hot-only'") == true)
        // Every message says which rule it is about.
        #expect(error("k:* policy write-thru")?.hasPrefix("rule 'k:*'") == true)
    }

    @Test func firstMatchWinsAndTheDefaultIsWriteThroughToWarm() throws {
        let rules = PlacementRules([
            try rule("user:admin:* policy hot-only"),
            try rule("user:* policy write-behind tier cold"),
            try rule("user:admin:root policy write-through"),   // shadowed by the first rule
        ])
        #expect(rules.rule(for: Array("user:admin:root".utf8)).policy == .hotOnly)
        #expect(rules.rule(for: Array("user:42".utf8)).policy == .writeBehind)
        let other = rules.rule(for: Array("order:1".utf8))
        #expect(other == PlacementRule.fallback)
        #expect(other.policy == .writeThrough && other.tier == .warm && other.ttlSeconds == nil)
        #expect(PlacementRules().rule(for: []) == .fallback)
    }

    @Test func seedPresetsPlaceAsTheSeedDid() throws {
        let rules = try seedPresets()
        let all = LowerTiers(hasWarm: true, warmItemLimit: 2 << 20, hasCold: true)
        #expect(try rules.place(Array("session:9f".utf8), valueSize: 100, tiers: all)
                == Placement(policy: .hotOnly, store: nil, clear: [], defaultTTLSeconds: 300))
        #expect(try rules.place(Array("profile:7".utf8), valueSize: 100, tiers: all)
                == Placement(policy: .writeThrough, store: .warm, clear: [.cold], defaultTTLSeconds: nil))
        #expect(try rules.place(Array("catalog:2024-06".utf8), valueSize: 100, tiers: all)
                == Placement(policy: .writeThrough, store: .cold, clear: [.warm], defaultTTLSeconds: nil))
        #expect(rules.rule(for: Array("session:9f".utf8)).readsLowerTiers == false)
    }

    @Test func tooLargeForWarmGoesCold() throws {
        let rules = PlacementRules([try rule("big:* policy write-behind ttl 10")])
        let cosmos = LowerTiers(hasWarm: true, warmItemLimit: 2 << 20, hasCold: true)
        let limit = 2 << 20
        #expect(try rules.place(Array("k".utf8), valueSize: limit, tiers: cosmos).store == .warm)
        #expect(try rules.place(Array("k".utf8), valueSize: limit + 1, tiers: cosmos)
                == Placement(policy: .writeThrough, store: .cold, clear: [.warm], defaultTTLSeconds: nil))
        #expect(try rules.place(Array("big:1".utf8), valueSize: limit + 1, tiers: cosmos)
                == Placement(policy: .writeBehind, store: .cold, clear: [.warm], defaultTTLSeconds: 10))
        // SQLite has no item limit.
        let sqlite = LowerTiers(hasWarm: true, warmItemLimit: nil, hasCold: true)
        #expect(try rules.place(Array("k".utf8), valueSize: 64 << 20, tiers: sqlite).store == .warm)
    }

    @Test func usesWhicheverLowerTierIsConfigured() throws {
        let rules = PlacementRules([try rule("c:* policy write-through tier cold")])
        let warmOnly = LowerTiers(hasWarm: true, warmItemLimit: 2 << 20, hasCold: false)
        let coldOnly = LowerTiers(hasWarm: false, hasCold: true)
        let hotOnly = LowerTiers(hasWarm: false, hasCold: false)
        #expect(try rules.place(Array("c:1".utf8), valueSize: 10, tiers: warmOnly)
                == Placement(policy: .writeThrough, store: .warm, clear: [], defaultTTLSeconds: nil))
        #expect(try rules.place(Array("w".utf8), valueSize: 10, tiers: coldOnly).store == .cold)
        #expect(try rules.place(Array("w".utf8), valueSize: 10, tiers: hotOnly)
                == Placement(policy: .hotOnly, store: nil, clear: [], defaultTTLSeconds: nil))
        #expect(throws: TierError.tooLarge(limit: 2 << 20)) {
            try rules.place(Array("w".utf8), valueSize: (2 << 20) + 1, tiers: warmOnly)
        }
    }
}
