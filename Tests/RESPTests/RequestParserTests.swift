import Testing
@testable import RESP

@Suite struct RequestParserTests {
    @Test func eachCorpusRequestAlone() {
        for c in requestCorpus() {
            let out = parse(c.bytes)
            #expect(out.status == .ok, "\(c.expected)")
            #expect(out.requests == [c.expected])
            #expect(out.partialBytes == 0)
        }
    }

    @Test func pipelineSplitAtEveryByteBoundary() {
        let (stream, expected) = concatenate(requestCorpus())
        #expect(parse(stream).requests == expected)
        for k in 0...stream.count {
            for clear in [false, true] {
                let out = parse(stream, cuts: [k], clearBetweenFeeds: clear)
                #expect(out.status == .ok)
                if out.requests != expected {
                    Issue.record("split at \(k) (clear \(clear)) gave \(out.requests.count) requests")
                    return
                }
            }
        }
    }

    @Test func pipelineInOneByteSegments() {
        let (stream, expected) = concatenate(requestCorpus())
        for clear in [false, true] {
            let out = parse(stream, cuts: oneByteCuts(stream.count), clearBetweenFeeds: clear)
            #expect(out.status == .ok)
            #expect(out.requests == expected)
        }
    }

    @Test func pipelineSplitAtRandomPlaces() {
        let (stream, expected) = concatenate(requestCorpus())
        var rng = SeededRandom(seed: 11)
        for _ in 0..<300 {
            let cuts = (0..<Int.random(in: 2...12, using: &rng)).map { _ in Int.random(in: 0...stream.count, using: &rng) }.sorted()
            let out = parse(stream, cuts: cuts, clearBetweenFeeds: Bool.random(using: &rng))
            #expect(out.requests == expected, "cuts \(cuts)")
        }
    }

    @Test func bigBulksSplitAnywhere() {
        var rng = SeededRandom(seed: 3)
        let cases = [multibulk([Array("SET"), Array("big"), rng.bytes(1 << 20)]),
                     multibulk("GET", "big"),
                     multibulk([Array("MSET"), Array("a"), rng.bytes(100_000), Array("b"), rng.bytes(70_000)])]
        let (stream, expected) = concatenate(cases)
        // Every offset in and around the framing of the first and last requests, random ones elsewhere.
        let firstPayloadEnd = cases[0].bytes.count
        let tailStart = stream.count - cases[2].bytes.count
        let near = Array(0..<24) + Array((firstPayloadEnd - 6)..<(firstPayloadEnd + 30)) + Array(tailStart..<(tailStart + 30))
        for cut in near {
            #expect(parse(stream, cuts: [cut], clearBetweenFeeds: true).requests == expected, "cut \(cut)")
        }
        for _ in 0..<30 {
            let cuts = (0..<Int.random(in: 1...30, using: &rng)).map { _ in Int.random(in: 1..<stream.count, using: &rng) }.sorted()
            #expect(parse(stream, cuts: cuts).requests == expected, "cuts \(cuts)")
        }
    }

    @Test func partialBytesAndBytesWanted() {
        var parser = RequestParser()
        var frames: [RequestFrame] = []
        var spans: [ArgSpan] = []
        let head = Array("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n") + [UInt8](repeating: 7, count: 1000)
        let status = head.withUnsafeBytes { parser.feed($0, frames: &frames, spans: &spans) }
        #expect(status == .ok)
        #expect(frames.isEmpty)
        #expect(spans.isEmpty)                      // kept by the parser until the request completes
        #expect(parser.partialBytes == head.count)
        #expect(parser.bytesWanted == 100_000 - 1000 + 2)
        #expect(parser.lineBuffer.isEmpty)          // nothing copied
        let tail = [UInt8](repeating: 7, count: 99_000) + Array("\r\n")
        frames.removeAll(); spans.removeAll()
        _ = tail.withUnsafeBytes { parser.feed($0, frames: &frames, spans: &spans) }
        #expect(frames.count == 1)
        #expect(frames.first?.name == CommandName("set"))
        #expect(frames.first?.length == head.count + tail.count)
        #expect(spans == [ArgSpan(offset: 8, count: 3), ArgSpan(offset: 17, count: 1), ArgSpan(offset: 29, count: 100_000)])
        #expect(parser.partialBytes == 0)
        #expect(parser.bytesWanted == 1)
    }

    @Test func spanStartPointsIntoTheCallersArray() {
        let stream = multibulk("GET", "a").bytes + Array("PING\r\n") + multibulk("SET", "b", "c").bytes
        var parser = RequestParser()
        var frames: [RequestFrame] = []
        var spans = [ArgSpan(offset: -1, count: -1)]      // the caller's array need not start empty
        let status = stream.withUnsafeBytes { parser.feed($0, frames: &frames, spans: &spans) }
        #expect(status == .ok)
        #expect(frames.map(\.spanStart) == [1, 3, 3])
        #expect(frames.map(\.argc) == [2, 1, 3])
        #expect(spans.count == 6)
    }

    @Test func maxBulkLengthIsConfigurable() {
        let ok = parse(multibulk("SET", "k", "0123456789").bytes, parser: RequestParser(maxBulkLength: 10))
        #expect(ok.status == .ok && ok.requests.count == 1)
        let tooBig = parse(multibulk("SET", "k", "0123456789A").bytes, parser: RequestParser(maxBulkLength: 10))
        #expect(tooBig.status == .protocolError("Protocol error: invalid bulk length"))
    }

    @Test func framesBeforeAnErrorAreDelivered() {
        let stream = multibulk("PING").bytes + Array("PING\r\n*1\r\n$x\r\n") + multibulk("PING").bytes
        for k in 0...stream.count {
            let out = parse(stream, cuts: [k])
            #expect(out.requests.count == 2)
            #expect(out.status == .protocolError("Protocol error: invalid bulk length"))
        }
        var parser = RequestParser()
        var frames: [RequestFrame] = [], spans: [ArgSpan] = []
        _ = stream.withUnsafeBytes { parser.feed($0, frames: &frames, spans: &spans) }
        #expect(parser.hasFailed)
        #expect(parser.errorReply == Array("-ERR Protocol error: invalid bulk length\r\n"))
        frames.removeAll()
        // The error sticks: Redis closes the connection after it.
        let again = multibulk("PING").bytes.withUnsafeBytes { parser.feed($0, frames: &frames, spans: &spans) }
        #expect(again == .protocolError("Protocol error: invalid bulk length"))
        #expect(frames.isEmpty)
        parser.reset()
        let fresh = multibulk("PING").bytes.withUnsafeBytes { parser.feed($0, frames: &frames, spans: &spans) }
        #expect(fresh == .ok && frames.count == 1)
    }

    /// The 64 KiB limits, applied as Redis does when bytes arrive one at a time: an
    /// unterminated line may hold 65536 bytes; the 65537th without a terminator is an error.
    @Test func lineLengthLimits() {
        let max = RequestParser.maxLineLength
        let a = [UInt8](repeating: UInt8(ascii: "a"), count: max)
        #expect(parse(a + Array("\n")).requests.count == 1)
        #expect(parse(a).status == .ok)
        #expect(parse(a).partialBytes == max)
        #expect(parse(a + Array("a")).status == .protocolError("Protocol error: too big inline request"))
        #expect(parse(a + Array("a"), cuts: [100, 65000]).status == .protocolError("Protocol error: too big inline request"))

        let ones = [UInt8](repeating: UInt8(ascii: "1"), count: max - 1)
        #expect(parse(Array("*") + ones).status == .ok)
        #expect(parse(Array("*") + ones + Array("1")).status == .protocolError("Protocol error: too big mbulk count string"))
        #expect(parse(Array("*") + ones + Array("\r\n")).status == .protocolError("Protocol error: invalid multibulk length"))
        #expect(parse(Array("*1\r\n$") + ones + Array("1")).status == .protocolError("Protocol error: too big bulk count string"))
        #expect(parse(Array("*1\r\n$") + ones + Array("\r\n")).status == .protocolError("Protocol error: invalid bulk length"))
    }

    /// Redis finds line ends with strchr, which stops at a NUL: such a request never completes,
    /// and the connection fails once 64 KiB are buffered.
    @Test func nulBeforeTheTerminatorStallsUntilTheLimit() {
        let pad = [UInt8](repeating: UInt8(ascii: "x"), count: RequestParser.maxLineLength)
        let cases: [([UInt8], String)] = [
            ([0x50, 0x49, 0, 0x4E, 0x47, 0x0D, 0x0A], "Protocol error: too big inline request"),
            (Array("*1") + [0] + Array("\r\n"), "Protocol error: too big mbulk count string"),
            (Array("*1\r\n$4") + [0] + Array("\r\nPING\r\n"), "Protocol error: too big bulk count string"),
        ]
        for (head, message) in cases {
            let stalled = parse(head + Array("PING\r\n"))
            #expect(stalled.status == .ok && stalled.requests.isEmpty)
            #expect(parse(head + pad).status == .protocolError(message))
            #expect(parse(head + pad, cuts: oneByteCuts(head.count + 10)).status == .protocolError(message))
        }
    }
}
