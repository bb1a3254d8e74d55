import Testing
@testable import RESP

/// Random garbage and mutated valid input (seeded, bounded): every verdict is ok or a
/// protocol error, never a crash; the verdict does not depend on how the bytes were split;
/// internal buffers stay bounded.
@Suite struct FuzzTests {
    static let framingBytes: [UInt8] = Array("*$\r\n\r\n0123456789-+ \"'\\x:_,#!=(%~>|abc") + [0, 0xFF]

    static func garbage(_ rng: inout SeededRandom) -> [UInt8] {
        (0..<Int.random(in: 0...80, using: &rng)).map { _ in
            Bool.random(using: &rng) ? framingBytes.randomElement(using: &rng)! : UInt8.random(in: 0...255, using: &rng)
        }
    }

    static func mutate(_ bytes: [UInt8], _ rng: inout SeededRandom) -> [UInt8] {
        var b = bytes
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            let i = Int.random(in: 0...b.count, using: &rng)
            switch Int.random(in: 0...3, using: &rng) {
            case 0 where i < b.count: b[i] = framingBytes.randomElement(using: &rng)!
            case 1 where i < b.count: b.remove(at: i)
            case 2: b.insert(framingBytes.randomElement(using: &rng)!, at: i)
            default: if i < b.count { b[i] ^= UInt8(1 << Int.random(in: 0...7, using: &rng)) }
            }
        }
        return b
    }

    static func randomCuts(_ count: Int, _ rng: inout SeededRandom) -> [Int] {
        (0..<Int.random(in: 1...6, using: &rng)).map { _ in Int.random(in: 0...count, using: &rng) }.sorted()
    }

    @Test func requestParserOnGarbageAndMutations() {
        var rng = SeededRandom(seed: 99)
        let (valid, _) = concatenate(requestCorpus())
        var errors = 0
        for round in 0..<3000 {
            let input = round % 2 == 0 ? Self.garbage(&rng)
                : Self.mutate(Array(valid[0..<Int.random(in: 0...min(valid.count, 300), using: &rng)]), &rng)
            let whole = parse(input)
            if case .protocolError = whole.status { errors += 1 }
            let cuts = Self.randomCuts(input.count, &rng)
            let split = parse(input, cuts: cuts, clearBetweenFeeds: Bool.random(using: &rng))
            #expect(split == whole, "round \(round) cuts \(cuts)")
            #expect(parse(input, cuts: oneByteCuts(input.count)) == whole, "round \(round) one byte")

            // Internal storage never outgrows the incomplete request the caller holds anyway.
            var parser = RequestParser()
            var frames: [RequestFrame] = [], spans: [ArgSpan] = []
            _ = input.withUnsafeBytes { parser.feed($0, frames: &frames, spans: &spans) }
            #expect(parser.lineBuffer.count <= RequestParser.maxLineLength)
            #expect(parser.pendingSpans.count * 4 <= parser.partialBytes)
        }
        #expect(errors > 500)       // the inputs really do exercise the error paths
    }

    @Test func replyScannerOnGarbageAndMutations() {
        var rng = SeededRandom(seed: 1234)
        var errors = 0, accepted = 0
        for round in 0..<3000 {
            let input = round % 2 == 0 ? Self.garbage(&rng)
                : Self.mutate((0..<3).flatMap { _ in randomValue(&rng, resp3: true).encoded }, &rng)
            let whole = scan(input)
            if case .protocolError = whole.status { errors += 1 } else { accepted += whole.replies.count }
            let cuts = Self.randomCuts(input.count, &rng)
            let split = scan(input, cuts: cuts)
            #expect(split.replies == whole.replies && split.status == whole.status, "round \(round) cuts \(cuts)")
            let oneByte = scan(input, cuts: oneByteCuts(input.count))
            #expect(oneByte.replies == whole.replies && oneByte.status == whole.status, "round \(round)")
            for r in whole.replies { #expect(r.end > 0 && r.end <= input.count) }
        }
        #expect(errors > 500 && accepted > 500)
    }

    /// Lengths near the limits of Int must be refused, not overflow.
    @Test func hugeCountsDoNotOverflow() {
        for text in ["*9223372036854775807\r\n", "*9223372036854775808\r\n", "*1\r\n$9223372036854775807\r\n",
                     "*1\r\n$99999999999999999999\r\n"] {
            let out = parse(Array(text))
            #expect(out.status != .ok, "\(text.debugDescription)")
        }
        var scanner = ReplyScanner()
        var infos: [ReplyInfo] = []
        let bytes = Array("$9223372036854775805\r\nabc")
        _ = bytes.withUnsafeBytes { scanner.feed($0, replies: &infos) }
        #expect(infos.isEmpty)
    }
}
