import Testing
@testable import RESP

/// The parser's verdicts next to redis-server 7.0's own: the same requests answered, the same
/// protocol error text, the connection closed after it. Every expected error text below is also
/// written out by hand (from src/networking.c), so a test fails if either side drifts.
@Suite(.serialized) struct RedisConformanceTests {
    /// Requests are PINGs (or other commands that cannot fail on protocol grounds), so Redis
    /// sends one reply per non-empty request before the error.
    static let cases: [(String, [UInt8], String?)] = {
        let pad = { (n: Int) in [UInt8](repeating: UInt8(ascii: "x"), count: n) }
        let ones = [UInt8](repeating: UInt8(ascii: "1"), count: 65536)
        let nulInline: [UInt8] = [0x50, 0x49, 0, 0x4E, 0x47, 0x0D, 0x0A]
        return [
            ("not a count", Array("*abc\r\n"), "Protocol error: invalid multibulk length"),
            ("empty count", Array("*\r\n"), "Protocol error: invalid multibulk length"),
            ("plus sign", Array("*+1\r\n"), "Protocol error: invalid multibulk length"),
            ("minus zero", Array("*-0\r\n"), "Protocol error: invalid multibulk length"),
            ("leading zero", Array("*01\r\n"), "Protocol error: invalid multibulk length"),
            ("over INT_MAX", Array("*2147483648\r\n"), "Protocol error: invalid multibulk length"),
            ("INT_MAX accepted", Array("*2147483647\r\nPING\r\n"), "Protocol error: expected '$', got 'P'"),
            ("over 1M accepted in 7.0", Array("*1048577\r\nPING\r\n"), "Protocol error: expected '$', got 'P'"),
            ("pipelined then bad $", Array("PING\r\n*1\r\n$4\r\nPING\r\n*1\r\nX3\r\nfoo\r\n"), "Protocol error: expected '$', got 'X'"),
            ("CR as first header byte", Array("*1\r\n\r\n"), "Protocol error: expected '$', got ' '"),
            ("LF as first header byte", Array("*1\r\n\n\r\n"), "Protocol error: expected '$', got ' '"),
            ("raw high byte echoed", Array("*1\r\n") + [0xE9] + Array("\r\n"), nil),   // compared as bytes below
            ("negative bulk", Array("*1\r\n$-1\r\n"), "Protocol error: invalid bulk length"),
            ("minus zero bulk", Array("*1\r\n$-0\r\n"), "Protocol error: invalid bulk length"),
            ("bulk not a number", Array("*1\r\n$abc\r\n"), "Protocol error: invalid bulk length"),
            ("bulk leading zero", Array("*1\r\n$04\r\nPING\r\n"), "Protocol error: invalid bulk length"),
            ("bulk over 512MB", Array("*1\r\n$536870913\r\n"), "Protocol error: invalid bulk length"),
            ("too big mbulk count", Array("*") + ones, "Protocol error: too big mbulk count string"),
            ("too big bulk count", Array("*1\r\n$") + ones, "Protocol error: too big bulk count string"),
            ("too big inline", pad(65537), "Protocol error: too big inline request"),
            ("unbalanced double", Array("PING\r\nSET \"a b\r\n"), "Protocol error: unbalanced quotes in request"),
            ("unbalanced single", Array("SET 'a b\r\n"), "Protocol error: unbalanced quotes in request"),
            ("quote then char", Array("ECHO \"a\"b\r\n"), "Protocol error: unbalanced quotes in request"),
            ("escaped closing quote", Array("ECHO \"abc\\\"\r\n"), "Protocol error: unbalanced quotes in request"),
            ("NUL stalls inline", nulInline + pad(65537 - nulInline.count), "Protocol error: too big inline request"),
            ("NUL stalls count", Array("*1") + [0] + Array("\r\n") + pad(65537 - 5), "Protocol error: too big mbulk count string"),
            ("NUL stalls bulk header", Array("PING\r\n*1\r\n$4") + [0] + pad(65537 - 3), "Protocol error: too big bulk count string"),
            ("ignored empties", Array("\r\n\n   \r\n*0\r\n*-1\r\n*-5\r\nPING\r\n"), nil),
            ("inline line ends", Array("PING\nPING\r\nPING\r\r\n"), nil),
            ("unchecked bytes after payload", Array("*1\r\n$4\r\nPINGxyPING\r\n*1\rx$4\ryPING\r\n"), nil),
            ("longest unterminated inline", pad(65536) + Array("\n"), nil),
        ]
    }()

    @Test func protocolErrorsMatchRedis() throws {
        try withRedisServer { redis in
            for (label, bytes, message) in Self.cases {
                var parser = RequestParser()
                var frames: [RequestFrame] = [], spans: [ArgSpan] = []
                let status = bytes.withUnsafeBytes { parser.feed($0, frames: &frames, spans: &spans) }
                if let message { #expect(status == .protocolError(message), "\(label)") }
                let answered = frames.filter { !$0.isEmpty }.count

                let connection = try redis.connect()
                let replies = try connection.exchange(bytes, replies: answered + (parser.hasFailed ? 1 : 0))
                #expect(replies.count == answered + (parser.hasFailed ? 1 : 0), "\(label): \(replies)")
                for r in replies.prefix(answered) {
                    if case .error(let e) = r, e.starts(with: Array("ERR Protocol")) {
                        Issue.record("\(label): Redis failed earlier than we did: \(String(decoding: e, as: UTF8.self))")
                    }
                }
                if let reply = parser.errorReply {
                    // "-ERR …\r\n" without its type byte and CRLF is what hiredis hands back.
                    #expect(replies.last == .error(Array(reply.dropFirst().dropLast(2))), "\(label)")
                    #expect(connection.serverCloses(), "\(label): Redis should close after a protocol error")
                }
            }
        }
    }

    /// Random inline lines with quotes, escapes and odd whitespace: the arguments we split must
    /// be the ones Redis stores (RPUSH, then LRANGE reads them back), and an unbalanced line
    /// must be refused by both.
    @Test func inlineSplittingMatchesRedis() throws {
        let alphabet: [UInt8] = Array("ab x4F\t\"'\\\\\"'nrx1") + [0x0B, 0x0C, 0x0D, 0xC3, 0xA9]
        var rng = SeededRandom(seed: 42)
        try withRedisServer { redis in
            var connection = try redis.connect()
            var refused = 0, compared = 0
            for _ in 0..<400 {
                let tail = (0..<Int.random(in: 0...14, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }
                let line = Array("RPUSH L ") + tail + Array("\r\n")
                let stream = Array("DEL L\r\n") + line + Array("LRANGE L 0 -1\r\n")
                let ours = parse(stream)
                if case .protocolError(let message) = ours.status {
                    refused += 1
                    let replies = try connection.exchange(stream, replies: 2)
                    #expect(replies.count == 2 && replies[1] == .error(Array("ERR " + message)),
                            "\(String(decoding: tail, as: UTF8.self).debugDescription): \(replies)")
                    connection = try redis.connect()
                    continue
                }
                compared += 1
                #expect(ours.requests.count == 3)
                guard ours.requests.count == 3 else { continue }
                let values = Array(ours.requests[1].args.dropFirst(2))
                let replies = try connection.exchange(stream, replies: 3)
                let expectedList = RedisReply.array(values.map { .bulk($0) })
                #expect(replies.count == 3 && replies[2] == expectedList,
                        "\(String(decoding: tail, as: UTF8.self).debugDescription): ours \(values), Redis \(replies)")
            }
            // The generator must exercise both outcomes for the comparison to mean anything.
            #expect(refused > 20 && compared > 100)
        }
    }
}
