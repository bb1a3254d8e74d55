import Testing
@testable import RESP

/// Reply ends across segments (RESP/ReplyFramer.swift), as the proxy's upstream readers use it.
@Suite struct ReplyFramerTests {
    /// Yields `bytes` cut at `cuts`, as a buffer's segments.
    private func segments(_ bytes: [UInt8], cuts: [Int]) -> ((UnsafeRawBufferPointer) -> Bool) -> Void {
        { body in
            var start = 0
            for end in cuts + [bytes.count] where end > start {
                let goOn = bytes[start..<end].withUnsafeBytes { body($0) }
                start = end
                if !goOn { return }
            }
        }
    }

    @Test func endsAreCountedFromTheFirstByteAcrossSegments() {
        let bytes = Array("+OK\r\n$-1\r\n>2\r\n$1\r\na\r\n$1\r\nb\r\n:7\r\n".utf8)
        var framer = ReplyFramer()
        var ends: [ReplyEnd] = []
        let (status, fed) = framer.scan(segments(bytes, cuts: [3, 12, 20]), from: 100, into: &ends)
        #expect(status == .ok)
        #expect(fed == 100 + bytes.count)
        // The push between them is left out unless asked for.
        #expect(ends == [ReplyEnd(end: 105), ReplyEnd(end: 110, isNull: true), ReplyEnd(end: 100 + bytes.count)])
        var withPushes: [ReplyEnd] = []
        var again = ReplyFramer()
        _ = again.scan(segments(bytes, cuts: []), into: &withPushes, keepPushes: true)
        #expect(withPushes.map(\.isPush) == [false, false, true, false])
    }

    @Test func aReplyStillArrivingIsFinishedByTheNextScan() {
        var framer = ReplyFramer()
        var ends: [ReplyEnd] = []
        let head = Array("$5\r\nhel".utf8), rest = Array("lo\r\n+OK\r\n".utf8)
        #expect(framer.scan(segments(head, cuts: []), into: &ends).fed == head.count)
        #expect(ends.isEmpty)
        _ = framer.scan(segments(rest, cuts: []), from: head.count, into: &ends)
        #expect(ends == [ReplyEnd(end: 11), ReplyEnd(end: 16)])
    }

    @Test func itStopsWhenToldOrAtBytesThatDoNotFrame() {
        let bytes = Array("+A\r\n+B\r\n+C\r\n".utf8)
        var framer = ReplyFramer()
        var ends: [ReplyEnd] = []
        let (_, fed) = framer.scan(segments(bytes, cuts: [4, 8]), into: &ends, until: 1)
        #expect(fed == 4)
        #expect(ends.count == 1)
        var bad = ReplyFramer()
        var none: [ReplyEnd] = []
        let (status, _) = bad.scan(segments(Array("?nope\r\n+OK\r\n".utf8), cuts: [7]), into: &none)
        #expect(status != .ok)
        #expect(none.isEmpty)
    }
}
