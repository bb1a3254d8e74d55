import Testing
@testable import RESP

@Suite struct ReplyScannerTests {
    @Test func eachCorpusReplyAlone() {
        for v in replyCorpus() {
            let (bytes, expected) = replyStream([v])
            let out = scan(bytes)
            #expect(out.status == .ok, "\(String(decoding: bytes, as: UTF8.self).debugDescription)")
            #expect(out.replies == expected, "\(String(decoding: bytes, as: UTF8.self).debugDescription)")
            #expect(out.partial == 0)
        }
    }

    @Test func corpusSplitAtEveryByteBoundary() {
        let (bytes, expected) = replyStream(replyCorpus())
        for k in 0...bytes.count {
            let out = scan(bytes, cuts: [k])
            #expect(out.status == .ok)
            if out.replies != expected { Issue.record("split at \(k)"); return }
        }
        let oneByte = scan(bytes, cuts: oneByteCuts(bytes.count))
        #expect(oneByte.status == .ok)
        #expect(oneByte.replies == expected)
    }

    @Test func randomResp3StreamsSplitAnywhere() {
        var rng = SeededRandom(seed: 5)
        for _ in 0..<300 {
            let (bytes, expected) = replyStream((0..<Int.random(in: 1...6, using: &rng)).map { _ in randomValue(&rng, resp3: true) })
            #expect(scan(bytes).replies == expected)
            let cuts = (0..<Int.random(in: 1...8, using: &rng)).map { _ in Int.random(in: 0...bytes.count, using: &rng) }.sorted()
            let out = scan(bytes, cuts: cuts)
            #expect(out.status == .ok && out.replies == expected, "cuts \(cuts)")
        }
    }

    @Test func bigBulksAreSkippedNotRead() {
        var rng = SeededRandom(seed: 9)
        let big = rng.bytes(2 << 20)
        let (bytes, expected) = replyStream([.bulk(big), .array([.bulk(big), .simple("OK")]), .integer(1)])
        for cut in [1, 5, 9, 10, 100_000, 2 << 20, (2 << 20) + 8, (2 << 20) + 9, bytes.count - 5, bytes.count - 1] {
            #expect(scan(bytes, cuts: [cut]).replies == expected, "cut \(cut)")
        }
        var scanner = ReplyScanner()
        var infos: [ReplyInfo] = []
        let head = Array(bytes[0..<1000])
        _ = head.withUnsafeBytes { scanner.feed($0, replies: &infos) }
        let header = Array("$\(big.count)\r\n").count
        #expect(scanner.bytesWanted == big.count - (1000 - header) + 2)
        #expect(scanner.partialBytes == 1000)
    }

    @Test func partialReplyAcrossFeeds() {
        var scanner = ReplyScanner()
        var infos: [ReplyInfo] = []
        let a = Array("+OK\r\n|1\r\n+k\r\n")
        let b = Array("+v\r\n:5\r\n>2\r\n+a\r\n")
        let c = Array("+b\r\n")
        #expect(a.withUnsafeBytes { scanner.feed($0, replies: &infos) } == .ok)
        #expect(infos == [ReplyInfo(end: 5, type: UInt8(ascii: "+"))])
        #expect(scanner.partialBytes == a.count - 5)
        infos.removeAll()
        #expect(b.withUnsafeBytes { scanner.feed($0, replies: &infos) } == .ok)
        #expect(infos == [ReplyInfo(end: 8, type: UInt8(ascii: ":"))])
        infos.removeAll()
        #expect(c.withUnsafeBytes { scanner.feed($0, replies: &infos) } == .ok)
        #expect(infos == [ReplyInfo(end: 4, type: UInt8(ascii: ">"), isPush: true)])
        #expect(scanner.partialBytes == 0)
    }

    @Test(arguments: [
        "?x\r\n", "$abc\r\n", "$-2\r\n", "*-2\r\n", "|-1\r\n", "$01\r\n", "*+1\r\n",
        "$3\r\nabcXY", ":12a\r\n", ":\r\n", ":-\r\n", "_x\r\n", "#x\r\n", "#tt\r\n", "#\r\n",
        "*1\rX", "$?\r\n", "*9223372036854775807\r\n*9223372036854775807\r\n",
        "%4611686018427387904\r\n", ":123456789012345678901\r\n",
    ])
    func malformedRepliesAreProtocolErrors(_ text: String) {
        let bytes = Array(text)
        guard case .protocolError = scan(bytes).status else {
            Issue.record("accepted \(text.debugDescription)")
            return
        }
        guard case .protocolError = scan(bytes, cuts: oneByteCuts(bytes.count)).status else {
            Issue.record("accepted in 1-byte segments: \(text.debugDescription)")
            return
        }
    }

    @Test func errorIsStickyAndRepliesBeforeItCount() {
        let bytes = Array("+OK\r\n:1\r\n@oops\r\n+later\r\n")
        let out = scan(bytes)
        #expect(out.replies.map(\.end) == [5, 9])
        #expect(out.status == .protocolError("Protocol error: invalid reply type byte '@'"))
    }
}
