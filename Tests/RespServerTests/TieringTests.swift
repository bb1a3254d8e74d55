import Testing
@testable import RespServer
import RESP
import Tiers

/// The pure parts of tiering: which commands are tiered and how, reading the replies the
/// proxy's own requests get, and the `rule` directive. The wiring is tested end to end in
/// Tests/tiered against a real redis-server.
@Suite struct TieringTests {
    private func route(_ words: String...) -> TieredCommand.Route? {
        let args = words.map { Array($0.utf8) }
        return TieredCommand.route(CommandName(args[0]), args, table: CommandTable(), scripts: ScriptFlags(),
                                   strictScripts: false)
    }

    private func route(_ words: [String]) -> TieredCommand.Route? {
        let args = words.map { Array($0.utf8) }
        return TieredCommand.route(CommandName(args[0]), args, table: CommandTable(), scripts: ScriptFlags(),
                                   strictScripts: false)
    }

    private func plan(_ words: String...) -> TieredCommand.KeyedPlan? {
        if case .keyed(let p)? = route(words) { return p }
        return nil
    }

    @Test func blindWritesNeedNoBringUp() {
        let set = plan("SET", "k", "v", "EX", "10")!
        #expect(set.bringUp.isEmpty && set.written.map(\.index) == [1] && set.defaultTTL == .never)
        #expect(plan("set", "k", "v")!.defaultTTL == .always)
        #expect(plan("MSET", "a", "1", "b", "2")!.written.map(\.index) == [1, 3])
        #expect(plan("PSETEX", "k", "100", "v")!.bringUp.isEmpty)
    }

    @Test func readsBeforeWritesBringKeysUp() {
        #expect(plan("SET", "k", "v", "nx")!.bringUp.map(\.index) == [1])
        #expect(plan("SET", "k", "v", "NX")!.defaultTTL == .ifCreated)
        #expect(plan("SET", "k", "v", "KEEPTTL")!.defaultTTL == .never)
        #expect(plan("INCR", "k")!.defaultTTL == .ifCreated)
        #expect(plan("DEL", "a", "b")!.bringUp.map(\.index) == [1, 2])
        let rename = plan("RENAME", "a", "b")!
        #expect(rename.bringUp.map(\.index) == [1, 2] && rename.written.map(\.index) == [1, 2])
        #expect(plan("STRLEN", "k")!.written.isEmpty)
        #expect(plan("GETEX", "k")!.written.isEmpty && plan("GETEX", "k", "PERSIST")!.written.map(\.index) == [1])
    }

    @Test func copyToAnotherDatabase() {
        let copy = plan("COPY", "a", "b", "DB", "3", "REPLACE")!
        #expect(copy.written == [TieredCommand.KeyArg(index: 2, db: 3)])
        #expect(copy.bringUp == [TieredCommand.KeyArg(index: 1), TieredCommand.KeyArg(index: 2, db: 3)])
        #expect(route("COPY", "a", "b", "DB", "x") == nil, "Redis rejects it: it goes to hot alone")
    }

    @Test func wrongArityIsHotsToJudge() {
        #expect(route("GET") == nil && route("GET", "a", "b") == nil)
        #expect(route("MSET", "a") == nil && route("INCR") == nil && route("EXPIRE", "k") == nil)
        #expect(route("HSET", "h", "f", "v") == nil)
        if case .get? = route("GET", "k") {} else { Issue.record("GET is read-through") }
        if case .flush(let all)? = route("FLUSHALL", "ASYNC") { #expect(all) } else { Issue.record("FLUSHALL") }
    }

    @Test func execRepliesSplitIntoElements() {
        let exec = Array("*4\r\n$1\r\nx\r\n:-1\r\n-WRONGTYPE no\r\n_\r\n".utf8)
        let parts = ReplyParts.elements(exec)!
        #expect(parts.map { Array($0) } == ["$1\r\nx\r\n", ":-1\r\n", "-WRONGTYPE no\r\n", "_\r\n"].map { Array($0.utf8) })
        #expect(ReplyParts.elements(Array("*-1\r\n".utf8)) == nil)
        #expect(ReplyParts.integer(parts[1]) == -1 && ReplyParts.isError(parts[2]) && ReplyParts.isNull(parts[3]))
    }

    @Test func capturedStateOfAKey() {
        let now: Int64 = 1_000_000
        func string(_ get: String, _ pttl: String) -> KeyState? {
            KeyCapture.string.state(Array(get.utf8)[...], Array(pttl.utf8)[...], now: now)
        }
        #expect(string("$2\r\nab\r\n", ":1500\r\n") == .value(Array("ab".utf8), type: .string, expiresAtMillis: now + 1500))
        #expect(string("$0\r\n\r\n", ":-1\r\n") == .value([], type: .string, expiresAtMillis: nil))
        #expect(string("$-1\r\n", ":-2\r\n") == .absent)
        #expect(string("-WRONGTYPE x\r\n", ":-1\r\n") == nil, "another type, left as it was")
        // DUMP of a hash (listpack, Redis 7.0), and of a string: stored as the string's bytes.
        let hash: [UInt8] = [0x10] + Array(repeating: 0, count: 11)
        var reply = Array("$12\r\n".utf8) + hash + Array("\r\n".utf8)
        #expect(KeyCapture.dumped(reply[...], Array(":-1\r\n".utf8)[...], now: now) == .value(hash, type: .hash, expiresAtMillis: nil))
        let ab: [UInt8] = [0x00, 0x02, 0x61, 0x62, 0x0a, 0x00] + Array(repeating: 0, count: 8)
        reply = Array("$14\r\n".utf8) + ab + Array("\r\n".utf8)
        #expect(KeyCapture.dumped(reply[...], Array(":10\r\n".utf8)[...], now: now)
                == .value(Array("ab".utf8), type: .string, expiresAtMillis: now + 10))
        #expect(KeyCapture.dumped(Array("$-1\r\n".utf8)[...], Array(":-2\r\n".utf8)[...], now: now) == .absent)
    }

    @Test func batchesSelectOtherDatabasesAndComeBack() {
        var batch = DBBatch(home: 0)
        batch.add([Array("EXISTS".utf8), Array("a".utf8)], db: 0)
        batch.add([Array("EXISTS".utf8), Array("b".utf8)], db: 3)
        let commands = batch.finish().map { $0.map { String(decoding: $0, as: UTF8.self) } }
        #expect(commands == [["EXISTS", "a"], ["SELECT", "3"], ["EXISTS", "b"], ["SELECT", "0"]])
        let replies = [":1\r\n", "+OK\r\n", ":0\r\n", "+OK\r\n"].map { Array($0.utf8) }
        #expect(batch.ours(replies).map { ReplyParts.integer($0) } == [1, 0])
    }

    @Test func rulesFromConfAndFlags() throws {
        let c = try ConfigLoader(arguments: ["--rule", "sess:* policy hot-only ttl 300",
                                             "--rule", "cat:*", "policy", "write-through", "tier", "cold",
                                             "--tier-timeout", "750", "--tiers-allow-flush", "yes"]).load(environment: [:])
        #expect(c.rules.map(\.policy) == [.hotOnly, .writeThrough])
        #expect(c.rules[0].ttlSeconds == 300 && c.rules[1].tier == .cold)
        #expect(c.tierTimeoutMillis == 750 && c.tiersAllowFlush)
        #expect(throws: ConfigError.self) {
            try ConfigLoader(arguments: ["--rule", "x:* policy sometimes"]).load(environment: [:])
        }
    }
}
