import Testing
@testable import RespServer
import RESP

/// auth-mode proxy's rules and verdicts, without a socket: users from conf words, permissions
/// resolved against a real redis-server's COMMAND reply, and `ProxyAuth.judge` on frames.
@Suite struct ACLTests {
    static let table: CommandTable? = (try? realCommandReply()).flatMap { CommandTable(commandReply: $0) }

    func user(_ line: String) throws -> ACLUser {
        let words = line.split(separator: " ").map(String.init)
        var u = ACLUser(name: words[0])
        for w in words.dropFirst() { try u.apply(w) }
        return u
    }

    func frame(_ args: [String]) -> (RequestFrame, [[UInt8]]) {
        let bytes = args.map { Array($0.utf8) }
        return (RequestFrame(length: 0, argc: bytes.count, name: CommandName(bytes[0]), spanStart: 0, inlineArgs: bytes), bytes)
    }

    func reply(_ auth: ProxyAuth, _ state: inout ClientAuth, _ args: String..., inTransaction: Bool = false) -> String {
        let (f, a) = frame(args)
        switch auth.judge(f, &state, inTransaction: inTransaction, args: { a }) {
        case .pass: return "pass"
        case .reset: return "reset"
        case .rewrite(let bytes): return "rewrite " + String(decoding: bytes, as: UTF8.self)
        case .answer(let r, _): return String(decoding: r, as: UTF8.self)
        }
    }

    @Test func rulesApplyInOrderAndKeepOnlyHashes() throws {
        let u = try user("alice on >pw1 >pw2 <pw1 ~a:* %R~r:* &chan:* +@read")
        #expect(u.accepts(Array("pw2".utf8)) && !u.accepts(Array("pw1".utf8)))
        #expect(u.description == "user alice on #\(ACLUser.hash(Array("pw2".utf8))) ~a:* %R~r:* resetchannels &chan:* -@all +@read")
        #expect(!u.description.contains("pw2"))
        #expect(try !user("bob off >pw ~*").accepts(Array("pw".utf8)))
        #expect(try user("carol on nopass").accepts(Array("anything".utf8)))
        #expect(try !user("dave on >pw resetpass").accepts(Array("pw".utf8)))
        // What redis-server 7.0 lists for `>apw` in ACL LIST.
        #expect(ACLUser.hash(Array("apw".utf8)) == "e528e908837a6f2c169a132a07f95107a5cc523f61d09d028c2fa799aeef4257")
        for bad in ["x on #ABC", "x ~* ~a:*", "x &* &c", "x +@nosuch", "x (~a +get)", "x secret-word"] {
            #expect(throws: ConfigError.self) { try user(bad) }
        }
        do { _ = try user("x on secret-word") } catch let e as ConfigError { #expect(!e.description.contains("secret-word")) }
    }

    @Test func requirepassAndUserDefault() throws {
        var c = ACLConfig()
        c.requirePass = "dpw"
        #expect(try c.users()["default"]!.accepts(Array("dpw".utf8)))
        c.userLines = [["default", "on", ">other", "~*", "+@all"]]
        let d = try c.users()["default"]!
        #expect(d.accepts(Array("other".utf8)) && !d.accepts(Array("dpw".utf8)) && !d.allChannels)
        c.userLines.append(["default", "on"])
        #expect(throws: ConfigError.self) { try c.users() }
        #expect(try ACLConfig().users()["default"]!.description == "user default on nopass ~* &* +@all")
    }

    @Test func verdictsMatchRedis() throws {
        guard let table = ACLTests.table else { Issue.record("no COMMAND reply from redis-server"); return }
        var c = ACLConfig()
        c.mode = .proxy
        c.requirePass = "dpw"
        c.userLines = [["alice", "on", ">apw", "~a:*", "%R~r:*", "%W~w:*", "+@all", "-@dangerous", "-config|set"],
                       ["reader", "on", ">rpw", "~*", "+@read", "-get"]]
        let auth = ProxyAuth(users: try c.users())
        auth.tableLoaded(table)
        var s = auth.initialState()
        #expect(reply(auth, &s, "GET", "k") == "-NOAUTH Authentication required.\r\n")
        // Redis's unknown-command error comes first (made by the proxy: the upstream might know it).
        #expect(reply(auth, &s, "NOSUCH", "a") == "-ERR unknown command 'NOSUCH', with args beginning with: 'a' \r\n")
        #expect(reply(auth, &s, "GET") == "pass")                     // and its arity error
        #expect(reply(auth, &s, "AUTH", "alice", "no") == "-WRONGPASS invalid username-password pair or user is disabled.\r\n")
        #expect(reply(auth, &s, "AUTH", "alice", "apw") == "+OK\r\n")
        #expect(reply(auth, &s, "SET", "w:1", "v") == "pass")
        #expect(reply(auth, &s, "SET", "w:1", "v", "GET").hasPrefix("-NOPERM this user has no permissions to access one of the keys"))
        #expect(reply(auth, &s, "GET", "r:1") == "pass")
        #expect(reply(auth, &s, "KEYS", "*") == "-NOPERM this user has no permissions to run the 'keys' command\r\n")
        #expect(reply(auth, &s, "CONFIG", "SET", "a", "b") == "-NOPERM this user has no permissions to run the 'config|set' command\r\n")
        #expect(reply(auth, &s, "ACL", "WHOAMI") == "$5\r\nalice\r\n")
        #expect(reply(auth, &s, "PUBLISH", "c", "m") == "-NOPERM this user has no permissions to access one of the channels used as arguments\r\n")
        #expect(reply(auth, &s, "GET", "x", inTransaction: true).hasPrefix("-NOPERM") && s.transactionDirty)
        #expect(reply(auth, &s, "EXEC", inTransaction: true) == "-EXECABORT Transaction discarded because of previous errors.\r\n")
        #expect(reply(auth, &s, "HELLO", "3", "AUTH", "reader", "rpw", "SETNAME", "n")
                == "rewrite *4\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$7\r\nSETNAME\r\n$1\r\nn\r\n")
        #expect(reply(auth, &s, "GET", "k") == "-NOPERM this user has no permissions to run the 'get' command\r\n")
        #expect(reply(auth, &s, "MGET", "k") == "pass")
        #expect(reply(auth, &s, "EXEC") == "-EXECABORT Transaction discarded because of: NOPERM this user has no permissions to run the 'exec' command\r\n")
        #expect(reply(auth, &s, "RESET") == "reset")
        #expect(reply(auth, &s, "PING") == "-NOAUTH Authentication required.\r\n")
        #expect(reply(auth, &s, "AUTH", "dpw") == "+OK\r\n")
        #expect(reply(auth, &s, "TIERS", "HELP") == "pass")
    }
}
