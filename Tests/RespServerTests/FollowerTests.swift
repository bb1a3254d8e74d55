import Testing
@testable import RespServer
import RESP

/// A client's pipelined writes that follow its first into a key's batch (`KeyedOp.follow`): the
/// plan they may reuse without being routed again, and the request kept as the client sent it.
@Suite struct FollowerTests {
    private static let table = CommandTable(commandReply: (try? realCommandReply()) ?? [])

    private func reusable(_ name: String) throws -> Bool {
        let table = try #require(FollowerTests.table)
        return KeyedOp.planDependsOnLengthAlone(CommandName(name), table: table)
    }

    @Test func onlyPlansFixedByTheRequestsLengthAreReused() throws {
        for name in ["hset", "hincrby", "hdel", "lpush", "rpush", "sadd", "zadd", "xadd", "lset", "setbit"] {
            #expect(try reusable(name), "\(name): its keys sit at fixed places")
        }
        let why = [
            "set": "described by hand: its options decide what it reads",
            "incr": "described by hand", "del": "described by hand",
            "eval": "a script", "fcall": "a function",
            "sort": "STORE's position", "restore": "REPLACE", "move": "its db argument",
            "zunionstore": "a count of keys", "lmpop": "a count of keys",
            "georadius": "a key after a keyword", "xgroup": "subcommands", "object": "subcommands",
            "blpop": "blocking",
        ]
        for (name, reason) in why {
            #expect(try !reusable(name), "\(name): \(reason)")
        }
    }

    @Test func aFollowersArgumentsComeBackFromItsRequest() {
        let args: [[UInt8]] = [Array("HSET".utf8), Array("k".utf8), [0, 13, 10, 255], []]
        let follower = Follower(request: ReplyParts.command(args), plan: TieredCommand.KeyedPlan())
        #expect(follower.args == args)
    }
}
