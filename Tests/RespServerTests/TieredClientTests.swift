import RESP
import Testing
import Tiers
@testable import RespServer

/// The tiering code against a scripted `TieredClient`, no session: what it sends on the client's
/// route, and what it answers in the client's slot.
@Suite struct TieredClientTests {
    /// Answers each composed command as `answer` says and records what was sent and filled.
    final class ScriptedClient: TieredClient {
        private let worker: Worker
        var db = 0
        var homeDB: Int { 0 }
        var hot: HotClient { worker.hot }
        var watchProbe: ProbeConnection { worker.watchProbe }
        var isClosed = false
        var onSharedRoute = true
        var watchedKeys: [TierKey] = []
        var tracksKeys = false
        var foldsInDoubt = 0
        private let answer: ([[UInt8]]) -> String
        private(set) var sent: [String] = []
        private(set) var filled: [String] = []

        init(_ proxy: EmbeddedProxy, answer: @escaping ([[UInt8]]) -> String) {
            worker = proxy.worker
            self.answer = answer
        }

        func sendComposed(_ commands: [[[UInt8]]], _ done: @escaping ([[UInt8]], ReplySlot) -> Void) {
            sent += commands.map { $0.map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ") }
            done(commands.map { Array(answer($0).utf8) }, ReplySlot(awaited: true))
        }

        /// Requests the batch path sends already encoded: recorded as their raw bytes.
        func sendComposed(encoded bytes: [UInt8], count: Int, _ done: @escaping ([[UInt8]], ReplySlot) -> Void) {
            sent.append(String(decoding: bytes, as: UTF8.self))
            done(Array(repeating: Array("+QUEUED\r\n".utf8), count: count), ReplySlot(awaited: true))
        }

        var commandTable: CommandTable { worker.commandTable }

        // No request frames reach the tiering code in these tests (nothing follows a batch).
        func requestBytes(_ frame: RequestFrame) -> [UInt8] { [] }
        func argument(_ frame: RequestFrame, _ index: Int, in request: [UInt8], is bytes: [UInt8]) -> Bool { false }

        func fill(_ slot: ReplySlot, _ reply: [UInt8]) {
            slot.reply = reply
            filled.append(String(decoding: reply, as: UTF8.self))
        }
    }

    private static let flushdb = [Array("FLUSHDB".utf8)]

    @Test func aRefusedFlushIsJudgedByRedisFirstAndRunsNothing() throws {
        let proxy = try EmbeddedProxy()
        let client = ScriptedClient(proxy) { String(decoding: $0[0], as: UTF8.self) == "FLUSHDB" ? "+QUEUED\r\n" : "+OK\r\n" }
        var done = false
        FlushOp.refuse(Self.flushdb, because: "not here", session: client) { done = true }
        #expect(done)
        #expect(client.sent == ["MULTI", "FLUSHDB", "DISCARD"])
        #expect(client.filled == ["-ERR tierproxy: not here\r\n"])
    }

    @Test func redisOwnRefusalOfAFlushIsWhatTheClientSees() throws {
        let proxy = try EmbeddedProxy()
        let noperm = "-NOPERM User alice has no permissions to run the 'flushdb' command\r\n"
        let client = ScriptedClient(proxy) { String(decoding: $0[0], as: UTF8.self) == "FLUSHDB" ? noperm : "+OK\r\n" }
        FlushOp.refuse(Self.flushdb, because: "not here", session: client) {}
        #expect(client.filled == [noperm])
    }

    @Test func aKeyspaceCommandBelowNoTierPassesAsItIs() throws {
        let proxy = try EmbeddedProxy()
        let client = ScriptedClient(proxy) { _ in ":7\r\n" }
        var done = false
        KeyspaceOp.passThrough([Array("DBSIZE".utf8)], client) { done = true }
        #expect(done && client.sent == ["DBSIZE"] && client.filled == [":7\r\n"])
    }
}
