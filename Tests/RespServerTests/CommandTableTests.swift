import Testing
import Foundation
@testable import RespServer
import RESP

/// A real redis-server's `COMMAND` reply, raw: a Python helper starts redis-server on a free
/// loopback port, asks, reads until hiredis says the reply is complete, and shuts it down.
func realCommandReply() throws -> [UInt8] {
    let script = #"""
import socket, subprocess, sys, time, hiredis
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                      "--appendonly", "no", "--logfile", ""], stdout=subprocess.DEVNULL)
try:
    deadline = time.time() + 10
    while True:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=10); break
        except OSError:
            if time.time() > deadline: raise
            time.sleep(0.02)
    c.sendall(b"*1\r\n$7\r\nCOMMAND\r\n")
    raw, reader = b"", hiredis.Reader()
    while True:
        chunk = c.recv(65536)
        if not chunk: raise SystemExit("connection closed early")
        raw += chunk; reader.feed(chunk)
        if reader.gets() is not False: break
    sys.stdout.buffer.write(raw)
    c.sendall(b"SHUTDOWN NOSAVE\r\n")
finally:
    try: p.wait(5)
    except subprocess.TimeoutExpired: p.kill()
"""#
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", script]
    let out = Pipe()
    process.standardOutput = out
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0, !data.isEmpty else {
        throw ConfigError("could not fetch COMMAND from a redis-server (exit \(process.terminationStatus))")
    }
    return [UInt8](data)
}

@Suite struct CommandTableTests {
    @Test func learnsKeyPositionsAndFlagsFromRedis() throws {
        let table = try #require(CommandTable(commandReply: try realCommandReply()))
        #expect(table.count > 150)
        let get = try #require(table.info(CommandName("get")))
        #expect(get.arity == 2 && get.firstKey == 1 && get.lastKey == 1 && get.isReadonly)
        #expect(get.keyIndexes(argc: 2) == [1])
        let mset = try #require(table.info(CommandName("mset")))
        #expect(mset.isWrite && mset.keyIndexes(argc: 5) == [1, 3])
        #expect(table.info(CommandName("del"))?.keyIndexes(argc: 4) == [1, 2, 3])
        #expect(table.info(CommandName("ping"))?.keyIndexes(argc: 1) == [])
        #expect(table.info(subcommand: "client|setname") != nil)
        #expect(table.info(CommandName("no-such-command")) == nil)
    }

    /// A COMMAND reply of an unexpected shape (a module's command, another server) is read as
    /// far as it makes sense: odd entries are skipped, never a crash.
    @Test func oddEntriesAreSkipped() {
        let odd = "*3\r\n"
            + "*6\r\n$3\r\nfoo\r\n$1\r\nx\r\n*0\r\n:1\r\n:1\r\n:1\r\n"            // arity not an integer
            + "*3\r\n$3\r\nbar\r\n:2\r\n*0\r\n"                                        // too short
            + "*10\r\n$3\r\nget\r\n:2\r\n*1\r\n+readonly\r\n:1\r\n:1\r\n:1\r\n*0\r\n*0\r\n"
            + "*1\r\n:7\r\n*1\r\n$1\r\nz\r\n"                                             // key specs and subcommands of the wrong shape
        let table = CommandTable(commandReply: Array(odd.utf8))
        #expect(table?.count == 1 && table?.info(CommandName("get"))?.keySpecs.isEmpty == true)
        #expect(CommandTable(commandReply: Array("*1\r\n:1\r\n".utf8)) == nil)
        #expect(CommandTable(commandReply: Array("+OK\r\n".utf8)) == nil)
        #expect(CommandTable(commandReply: []) == nil)
    }

    /// Numbers no Redis sends (a module's, a malformed entry's) leave the entry out, so nothing
    /// computes with them later (an arity of Int.min negated would trap on every request).
    @Test func entriesWithOutlandishNumbersAreSkipped() {
        let reply = "*3\r\n"
            + "*6\r\n$4\r\nodd1\r\n:-9223372036854775808\r\n*0\r\n:1\r\n:1\r\n:1\r\n"
            + "*6\r\n$4\r\nodd2\r\n:2\r\n*0\r\n:1\r\n:9223372036854775807\r\n:1\r\n"
            + "*6\r\n$3\r\nget\r\n:2\r\n*1\r\n+readonly\r\n:1\r\n:1\r\n:1\r\n"
        let table = CommandTable(commandReply: Array(reply.utf8))
        #expect(table?.count == 1 && table?.info(CommandName("get")) != nil)
    }

    /// Key specs of odd shapes, or a client's odd `numkeys`, give argument indexes inside the
    /// request or none: never a trap, never the command's name or a position past the end.
    @Test func keySpecIndexesStayInsideTheRequest() {
        let big = Int(Int32.max)
        let begins: [KeySpec.Begin] = [.index(-3), .index(0), .index(1), .index(2), .index(big),
                                       .keyword("k", startFrom: 0), .keyword("k", startFrom: -1), .keyword("k", startFrom: big)]
        let finds: [KeySpec.Find] = [.range(lastKey: 0, step: 1, limit: 0), .range(lastKey: -1, step: 1, limit: 0),
                                     .range(lastKey: big, step: 1, limit: 0), .range(lastKey: -big, step: 1, limit: 0),
                                     .range(lastKey: -1, step: 1, limit: -2), .range(lastKey: -1, step: 2, limit: 2),
                                     .range(lastKey: 0, step: 0, limit: 0), .range(lastKey: 2, step: -1, limit: 0),
                                     .keyNum(numKeysIndex: 0, firstKey: 1, step: 1), .keyNum(numKeysIndex: -5, firstKey: 1, step: 1),
                                     .keyNum(numKeysIndex: 0, firstKey: -4, step: 1), .keyNum(numKeysIndex: big, firstKey: 1, step: 1)]
        let counts = ["9223372036854775807", "-9223372036854775808", "-1", "0", "1", "2", "99", "x"]
        for begin in begins {
            for find in finds {
                let spec = KeySpec(begin: begin, find: find, flags: ["RW"])
                for count in counts {
                    let args = ["cmd", count, "k", "a", "b"].map { Array($0.utf8) }
                    let indexes = spec.keyIndexes(args)
                    #expect(indexes.allSatisfy { $0 >= 1 && $0 < args.count }, "\(begin) \(find) numkeys \(count): \(indexes)")
                }
            }
        }
    }

    /// What may ride the shared upstream connection follows Redis's own flags plus the
    /// connection-scoped list; everything else pins the client.
    @Test func sharingFollowsRedisFlags() throws {
        let table = try #require(CommandTable(commandReply: try realCommandReply()))
        func share(_ name: String) -> Bool { Worker.mayShare(name, table) }
        for name in ["get", "set", "mget", "incr", "hset", "zadd", "xadd", "eval", "ping", "keys", "object"] {
            #expect(share(name), "\(name) should share")
        }
        for name in ["blpop", "brpop", "xread", "subscribe", "publish", "monitor", "select", "auth",
                     "hello", "multi", "exec", "watch", "client", "config", "debug", "wait", "reset"] {
            #expect(!share(name), "\(name) should pin")
        }
    }
}
