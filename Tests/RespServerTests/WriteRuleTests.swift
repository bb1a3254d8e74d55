import Testing
@testable import RespServer
import RESP

/// The write rule (docs/semantics.md "Every write path"): how any command is tiered, decided
/// from a real redis-server's COMMAND reply (its key specs and flags), not from a list.
@Suite struct WriteRuleTests {
    private static let table = CommandTable(commandReply: (try? realCommandReply()) ?? [])

    private func route(_ words: String..., strict: Bool = false, scripts: ScriptFlags = ScriptFlags()) throws -> TieredCommand.Route? {
        let table = try #require(WriteRuleTests.table)
        let args = words.map { Array($0.utf8) }
        return TieredCommand.route(CommandName(args[0]), args, table: table, scripts: scripts, strictScripts: strict)
    }

    private func plan(_ words: String..., scripts: ScriptFlags = ScriptFlags()) throws -> TieredCommand.KeyedPlan? {
        try plan(words: words, scripts: scripts)
    }

    private func plan(words: [String], scripts: ScriptFlags = ScriptFlags()) throws -> TieredCommand.KeyedPlan? {
        let table = try #require(WriteRuleTests.table)
        let args = words.map { Array($0.utf8) }
        let r = TieredCommand.route(CommandName(args[0]), args, table: table, scripts: scripts, strictScripts: false)
        if case .keyed(let p)? = r { return p }
        return nil
    }

    @Test func keySpecsFindEveryKindOfKey() throws {
        let table = try #require(WriteRuleTests.table)
        func keys(_ words: String...) -> [Int] {
            let args = words.map { Array($0.utf8) }
            let info = table.info(CommandName(args[0]))!
            return info.keySpecs.flatMap { $0.keyIndexes(args) }
        }
        #expect(keys("EVAL", "return 1", "2", "a", "b", "x") == [3, 4], "numkeys")
        #expect(keys("EVAL", "return 1", "x") == [], "a malformed numkeys finds nothing; Redis judges it")
        #expect(keys("SUNIONSTORE", "d", "s1", "s2") == [1, 2, 3])
        #expect(keys("XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", "s1", "s2", ">", ">") == [7, 8],
                "keyword search and the half-of-the-rest limit")
        #expect(keys("GEORADIUS", "src", "0", "0", "1", "km", "STORE", "dst") == [1, 7], "STORE keyword")
        #expect(keys("LMOVE", "a", "b", "LEFT", "RIGHT") == [1, 2])
        #expect(keys("BITOP", "AND", "dest", "k1", "k2") == [2, 3, 4])
    }

    @Test func writesCaptureTheirKeysAndReadsBringThemUp() throws {
        let bitop = try #require(try plan("BITOP", "OR", "dest", "a", "b"))
        #expect(bitop.written.map(\.index) == [2] && bitop.bringUp.map(\.index) == [3, 4], "OW destination is not read")
        let setbit = try #require(try plan("SETBIT", "k", "7", "1"))
        #expect(setbit.written.map(\.index) == [1] && setbit.bringUp.map(\.index) == [1])
        let sort = try #require(try plan("SORT", "src", "LIMIT", "0", "10", "STORE", "dst"))
        #expect(sort.bringUp.map(\.index) == [1] && sort.written.map(\.index) == [6])
        let move = try #require(try plan("MOVE", "k", "3"))
        #expect(move.written == [TieredCommand.KeyArg(index: 1), TieredCommand.KeyArg(index: 1, db: 3)])
        #expect(try plan("MOVE", "k", "x") == nil, "Redis rejects it: hot alone")
        #expect(try plan("HSET", "h", "f", "v")?.written.map(\.index) == [1], "every type is tiered")
        #expect(try plan("HGET", "h", "f")?.bringUp.map(\.index) == [1], "and brought up before a read")
        #expect(try plan("HGET", "h", "f")?.written.isEmpty == true)
        #expect(try plan("GETBIT", "k", "1")?.bringUp.map(\.index) == [1], "bitmap reads read strings")
        #expect(try route("PING") == nil)
        #expect(try route("HSET", "h") == nil)
    }

    /// Collection commands leave their type or nothing, read with DUMP; string commands a string
    /// or nothing, read with GET; commands of any type with DUMP too.
    @Test func writtenKeysAreReadAsTheCommandLeavesThem() throws {
        for words in [["SADD", "s", "a"], ["HSET", "h", "f", "v"], ["XGROUP", "DESTROY", "x", "g"], ["SPOP", "s", "2"],
                      ["SORT", "l", "STORE", "d"], ["GEOADD", "g", "1", "2", "m"], ["SINTERSTORE", "d", "a", "b"],
                      ["LMOVE", "a", "b", "LEFT", "RIGHT"], ["ZADD", "z", "1", "m"]] {
            #expect(try plan(words: words)?.capture == .dump, "\(words)")
        }
        for words in [["SETRANGE", "k", "0", "v"], ["BITOP", "OR", "d", "a"], ["PFADD", "p", "a"], ["SETBIT", "k", "1", "1"]] {
            #expect(try plan(words: words)?.capture == .string, "\(words)")
        }
        for words in [["RESTORE", "k", "0", "x"], ["EVAL", "return 1", "1", "k"], ["MIGRATE", "h", "1", "k", "0", "5"]] {
            #expect(try plan(words: words)?.capture == .dump, "\(words)")
        }
    }

    /// Blocking commands bring up every key they name, then run as sent; a write's keys are
    /// captured once it answered, and the keys its key specs say it may delete are marked.
    @Test func blockingCommandsBringUpThenRunAsSent() throws {
        guard case .blocking(let move)? = try route("BLMOVE", "a", "b", "LEFT", "RIGHT", "0") else {
            Issue.record("BLMOVE must take the blocking route"); return
        }
        #expect(move.bringUp.map(\.index) == [1, 2] && move.written.map(\.index) == [1, 2])
        #expect(move.deletes.map(\.index) == [1], "only its source may be emptied")
        guard case .blocking(let group)? = try route("XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "x", ">") else {
            Issue.record("XREADGROUP BLOCK must take the blocking route"); return
        }
        #expect(group.written.map(\.index) == [7], "its group changes: what it reads it writes")
        #expect(group.deletes.isEmpty, "it never deletes its stream")
        guard case .blocking(let read)? = try route("XREAD", "BLOCK", "0", "STREAMS", "x", "y", "$", "$") else {
            Issue.record("XREAD BLOCK must take the blocking route"); return
        }
        #expect(read.bringUp.map(\.index) == [4, 5] && read.written.isEmpty)
        guard case .blocking(let pop)? = try route("BLMPOP", "0", "2", "a", "b", "LEFT") else {
            Issue.record("BLMPOP must take the blocking route"); return
        }
        #expect(pop.deletes.map(\.index) == [3, 4])
        // Without BLOCK they cannot block: brought up and captured as any other command.
        #expect(try plan("XREADGROUP", "GROUP", "g", "c", "STREAMS", "x", ">")?.written.map(\.index) == [5])
        #expect(try plan("XREAD", "STREAMS", "x", "0")?.bringUp.map(\.index) == [2])
    }

    @Test func scriptsByTheirDeclaredKeysAndFlags() throws {
        let eval = try #require(try plan("EVAL", "redis.call('DEL', KEYS[1])", "1", "lock"))
        #expect(eval.script && eval.written.map(\.index) == [3] && eval.bringUp.map(\.index) == [3])
        let readOnly = try #require(try plan("EVAL", "#!lua flags=no-writes\nreturn redis.call('GET', KEYS[1])", "1", "k"))
        #expect(readOnly.written.isEmpty && readOnly.bringUp.map(\.index) == [3])
        #expect(try plan("EVAL_RO", "return 1", "1", "k")?.written.isEmpty == true)
        #expect(try plan("FCALL", "f", "2", "a", "b")?.written.map(\.index) == [3, 4])
        #expect(try plan("FCALL_RO", "f", "1", "a")?.written.isEmpty == true)
        let scripts = ScriptFlags()
        let body = "#!lua flags=no-writes\nreturn 1"
        scripts.loaded(Array(body.utf8))
        #expect(try plan("EVALSHA", ScriptFlags.sha1Hex(Array(body.utf8)), "1", "k", scripts: scripts)?.written.isEmpty == true)
        #expect(try plan("EVALSHA", String(repeating: "0", count: 40), "1", "k", scripts: scripts)?.written.map(\.index) == [3],
                "an unknown script may write")
        #expect(ScriptFlags.sha1Hex(Array("return 1".utf8)) == "e0e1f9fabfc9d4800c877a703b823ac0578ff8db")
    }

    @Test func strictScriptsRefuseUndeclaredWriters() throws {
        guard case .refused(let message)? = try route("EVAL", "redis.call('DEL', 'x')", "0", strict: true) else {
            Issue.record("strict must refuse a keyless script that may write"); return
        }
        #expect(message.hasPrefix("ERR "))
        #expect(try route("EVAL", "#!lua flags=no-writes\nreturn 1", "0", strict: true) == nil)
        #expect(try route("EVAL_RO", "return 1", "0", strict: true) == nil)
        #expect(try route("EVAL", "redis.call('DEL', 'x')", "0") == nil, "lenient: it runs on hot alone")
    }

    @Test func blindWritesDeriveTheirState() {
        func args(_ w: String...) -> [[UInt8]] { w.map { Array($0.utf8) } }
        #expect(BlindWrite.set(args("SET", "k", "v"))?.expiry == BlindWrite.Expiry.none)
        #expect(BlindWrite.set(args("SET", "k", "v", "ex", "10"))?.expiry == .relativeMillis(10_000))
        #expect(BlindWrite.set(args("SET", "k", "v", "PXAT", "123"))?.expiry == .absoluteMillis(123))
        #expect(BlindWrite.set(args("SET", "k", "v", "EX", "0")) == nil, "Redis rejects it")
        #expect(BlindWrite.set(args("SET", "k", "v", "NX")) == nil && BlindWrite.set(args("SET", "k", "v", "EX", "1", "GET")) == nil)
        #expect(BlindWrite.setex(args("PSETEX", "k", "250", "v"), millis: true)?.expiry == .relativeMillis(250))
        let mset = BlindWrite.mset(args("MSET", "a", "1", "b", "2", "a", "3"))!
        let states = mset.states(args("MSET", "a", "1", "b", "2", "a", "3"), db: 0, now: 0)
        #expect(states.count == 2 && states[0].1 == .value(Array("3".utf8), type: .string, expiresAtMillis: nil), "the last write wins")
    }
}
