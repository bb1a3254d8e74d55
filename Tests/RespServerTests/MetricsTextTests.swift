import Testing
@testable import RespServer
import Tiers

/// The runtime settings (TIERS CONFIG) and the log fields' formatting, without a server.
@Suite struct RuntimeSettingsTests {
    private func settings() -> RuntimeSettings {
        var c = Config()
        c.rules = [try! PlacementRule(arguments: ["s:*", "policy", "hot-only", "ttl", "300"])]
        return RuntimeSettings(c)
    }

    @Test func getsWhatTheConfigSaid() {
        let s = settings()
        #expect(s.get("rules") == "s:* policy hot-only ttl 300")
        #expect(s.get("tier-timeout") == "5000")
        #expect(s.get("tier-slowlog-threshold") == "500")
        #expect(s.get("nope") == nil)
    }

    @Test func setsSwapRulesAndNumbers() throws {
        let s = settings()
        try s.set("rules", "a:* policy write-behind; b:* policy write-through tier cold")
        #expect(s.rules.rules.count == 2 && s.rules.rule(for: Array("b:1".utf8)).tier == .cold)
        #expect(s.get("rules") == "a:* policy write-behind tier warm; b:* policy write-through tier cold")
        try s.set("rules", "")
        #expect(s.rules.rules.isEmpty)
        try s.set("tier-timeout", "250")
        #expect(s.tierTimeoutMillis == 250)
        try s.set("tier-slowlog-threshold", "-1")
        #expect(s.slowlogThresholdMillis == -1)
    }

    @Test func refusesWithRedisWords() {
        let s = settings()
        #expect(throws: ConfigError.self) { try s.set("tier-timeout", "0") }
        do { try s.set("nope", "1") } catch { #expect("\(error)" == "Unknown option or number of arguments for CONFIG SET - 'nope'") }
        do { try s.set("rules", "x policy maybe") } catch {
            #expect("\(error)".hasPrefix("CONFIG SET failed (possibly related to argument 'rules') - "))
        }
        #expect(s.get("rules") == "s:* policy hot-only ttl 300")   // a refused SET changes nothing
    }

    @Test func aMultiSetAppliesAllOrNothing() throws {
        let s = settings()
        #expect(throws: ConfigError.self) { try s.set([("tier-timeout", "250"), ("tier-slowlog-threshold", "x")]) }
        #expect(s.tierTimeoutMillis == 5000)                       // the valid first pair was not applied
        do { try s.set([("tier-timeout", "1"), ("Tier-Timeout", "2")]) } catch {
            #expect("\(error)" == "CONFIG SET failed (possibly related to argument 'Tier-Timeout') - duplicate parameter")
        }
        try s.set([("TIER-TIMEOUT", "250"), ("tier-slowlog-threshold", "7")])
        #expect(s.tierTimeoutMillis == 250 && s.slowlogThresholdMillis == 7)
    }

    @Test func keyHashIsStableFNV() {
        #expect(TierSlowLog.keyHash([]) == "cbf29ce484222325")
        #expect(TierSlowLog.keyHash(Array("a".utf8)) == "af63dc4c8601ec8c")
    }

    @Test func logValuesFormat() {
        #expect(LogValue.number(3).plain == "3" && LogValue.number(0.5).json == "0.5")
        #expect(LogValue.text("a b").plain == "\"a b\"" && LogValue.text("ab").plain == "ab")
        #expect(LogValue.text("x\"y").json == "\"x\\\"y\"")
        #expect(LogValue.text("a\nb").plain == "\"a\\nb\"" && LogValue.text("a\u{1}").plain == "\"a\\u0001\"")
    }
}
