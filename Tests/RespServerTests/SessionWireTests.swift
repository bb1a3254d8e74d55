import Testing
@testable import RespServer

/// The client session's protocol logic, bytes in and bytes out (`EmbeddedProxy`: real sessions
/// and upstream links on in-memory connections, Redis played by `MemoryRedis`). The oracle for
/// replies is what the same bytes get from `MemoryRedis` directly.
@Suite struct SessionWireTests {
    /// A pipeline of shared commands, multibulk and inline mixed, with a bulk holding CRLF.
    private static let pipeline: [UInt8] = {
        var bytes: [UInt8] = []
        for i in 0..<12 {
            bytes += command(["SET", "k\(i)", "v\(i)"])
            bytes += Array("GET k\(i)\r\n".utf8)
            bytes += command(["INCR", "n"])
        }
        bytes += command(["SET", "crlf", "a\r\nb"]) + command(["GET", "crlf"]) + command(["GET", "nothing"])
        bytes += Array("PING\r\n".utf8) + command(["ECHO", ""])
        return bytes
    }()

    static func command(_ args: [String]) -> [UInt8] {
        Array("*\(args.count)\r\n".utf8) + args.flatMap { Array("$\($0.utf8.count)\r\n\($0)\r\n".utf8) }
    }

    /// What Redis itself answers `bytes` with.
    private static func direct(_ bytes: [UInt8]) -> [UInt8] { MemoryRedis(MemoryRedis.Store()).serve(bytes).replies }

    @Test(arguments: [(1, 1), (2, 3), (3, 7), (7, 64), (64, 1), (1 << 20, 5), (1 << 20, 1 << 20)])
    func aPipelineSplitAnywhereIsAnsweredInOrder(requestChunk: Int, replyChunk: Int) throws {
        let proxy = try EmbeddedProxy()
        proxy.replyChunk = replyChunk
        let client = proxy.connect()
        var got: [UInt8] = []
        var rest = Self.pipeline[...]
        while !rest.isEmpty {
            client.send(Array(rest.prefix(requestChunk)))
            rest = rest.dropFirst(requestChunk)
            proxy.run()
            got += client.received()
        }
        #expect(String(decoding: got, as: UTF8.self) == String(decoding: Self.direct(Self.pipeline), as: UTF8.self))
        // Stateless commands stay on the shared connection, unless more than 32 of them are in
        // flight at once (all in one read): then the client gets a connection of its own, once
        // its shared replies are in, and its replies keep their order across the move.
        let inOneRead = requestChunk >= Self.pipeline.count
        #expect(client.session.pinned == inOneRead)
        #expect(proxy.upstreams.count == (inOneRead ? 2 : 1))
    }

    @Test func quitAnswersOkAfterTheRepliesOwedThenCloses() throws {
        let proxy = try EmbeddedProxy()
        let client = proxy.connect()
        // What follows QUIT is never run: Redis ignores it, and so must the proxy.
        client.send(Self.command(["SET", "a", "1"]) + Self.command(["GET", "a"]) + Array("QUIT\r\n".utf8)
                    + Self.command(["SET", "a", "2"]))
        proxy.run()
        #expect(client.receivedText() == "+OK\r\n$1\r\n1\r\n+OK\r\n")
        #expect(client.isClosed)
        #expect(proxy.store.strings[Array("a".utf8)] == Array("1".utf8))
        #expect(proxy.store.log == ["set", "get"])
    }

    @Test func whatFollowsQuitStaysUnreadWhenTheSharedLinkDrains() throws {
        // The requests before QUIT take the shared link over its high-water mark, which pauses
        // the client; the drain that lifts the pause must not read, nor send, what follows QUIT.
        let proxy = try EmbeddedProxy { $0.proxyBufferHighWater = 64 }
        let client = proxy.connect()
        proxy.holdsReplies = true
        let before = (0..<8).flatMap { Self.command(["SET", "k\($0)", String(repeating: "v", count: 20)]) }
        client.send(before + Array("QUIT\r\n".utf8))
        proxy.run()
        #expect(!client.connection.isReading)
        client.send(Self.command(["SET", "after", "1"]) + Array("PING\r\n".utf8))
        proxy.run()
        proxy.holdsReplies = false
        proxy.run()
        #expect(client.receivedText() == String(repeating: "+OK\r\n", count: 9))
        #expect(client.isClosed)
        #expect(proxy.store.strings[Array("after".utf8)] == nil)
        #expect(proxy.store.log == Array(repeating: "set", count: 8))
    }

    @Test func anOverLongInlineRequestGetsRedisErrorAndTheClose() throws {
        let proxy = try EmbeddedProxy()
        let client = proxy.connect()
        client.send("PING\r\n")
        proxy.run()
        #expect(client.receivedText() == "+PONG\r\n")
        // Redis refuses an inline line past 64 KiB without a newline, then closes.
        client.send([UInt8](repeating: UInt8(ascii: "x"), count: 70_000))
        proxy.run()
        #expect(client.receivedText() == "-ERR Protocol error: too big inline request\r\n")
        #expect(client.isClosed)
        #expect(proxy.store.log == ["ping"], "nothing of the line reached Redis")
    }

    @Test func aRequestThatPinsWaitsUnreadForTheSharedRepliesOwed() throws {
        let proxy = try EmbeddedProxy()
        let client = proxy.connect()
        proxy.holdsReplies = true
        client.send(Self.command(["GET", "a"]) + Self.command(["MULTI"]) + Self.command(["SET", "a", "1"]))
        proxy.run()
        // MULTI needs a connection of its own, and GET's reply is still owed on the shared one:
        // nothing after GET is sent, nor read from the client, until that reply is in.
        #expect(client.session.phase == .waitingToPin)
        #expect(!client.connection.isReading)
        #expect(proxy.store.log == ["get"])
        #expect(client.received().isEmpty)
        proxy.holdsReplies = false
        proxy.run()
        #expect(client.receivedText() == "$-1\r\n+OK\r\n+QUEUED\r\n")
        #expect(client.session.pinned && client.connection.isReading)
        #expect(proxy.upstreams.count == 2)
    }

    @Test(arguments: [1, 4, 1 << 20])
    func aTransactionPinsAndItsRepliesAreFramedWhole(replyChunk: Int) throws {
        let proxy = try EmbeddedProxy()
        proxy.replyChunk = replyChunk
        let client = proxy.connect()
        client.send(Self.command(["SET", "k", "before"]))
        proxy.run()
        #expect(client.receivedText() == "+OK\r\n")
        let transaction = Self.command(["MULTI"]) + Self.command(["SET", "k", "v"]) + Self.command(["INCR", "n"])
            + Self.command(["GET", "k"]) + Self.command(["EXEC"]) + Self.command(["GET", "k"])
        for byte in transaction {
            client.send([byte])
            proxy.run()
        }
        #expect(client.receivedText() == "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n+OK\r\n:1\r\n$1\r\nv\r\n$1\r\nv\r\n")
        #expect(client.session.pinned, "MULTI holds connection state: the client has a connection of its own")
        #expect(proxy.upstreams.count == 2)
        #expect(proxy.store.log == ["set", "set", "incr", "get", "get"])
    }
}
