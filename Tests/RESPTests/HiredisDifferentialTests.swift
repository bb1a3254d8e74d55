import Testing
@testable import RESP

/// hiredis 0.14.1's reader is the reference for RESP2: on random reply streams the scanner
/// must find the same number of replies ending at the same offsets.
@Suite struct HiredisDifferentialTests {
    @Test func randomResp2StreamsMatchHiredis() throws {
        var rng = SeededRandom(seed: 2024)
        var totalReplies = 0
        for round in 0..<3000 {
            let values = (0..<Int.random(in: 1...8, using: &rng)).map { _ in randomValue(&rng, resp3: false) }
            let bytes = values.flatMap(\.encoded)
            let reference = try #require(hiredisReplyEnds(bytes), "hiredis rejected round \(round)")
            let whole = scan(bytes)
            #expect(whole.status == .ok)
            #expect(whole.replies.map(\.end) == reference, "round \(round)")
            let cuts = (0..<Int.random(in: 1...4, using: &rng)).map { _ in Int.random(in: 0...bytes.count, using: &rng) }.sorted()
            #expect(scan(bytes, cuts: cuts).replies.map(\.end) == reference, "round \(round) cuts \(cuts)")
            totalReplies += reference.count
        }
        #expect(totalReplies > 3000 * 2)
    }

    /// A truncated stream: both must report the same complete replies and nothing more.
    @Test func truncatedStreamsMatchHiredis() throws {
        var rng = SeededRandom(seed: 77)
        for _ in 0..<1000 {
            let bytes = (0..<Int.random(in: 1...5, using: &rng)).flatMap { _ in randomValue(&rng, resp3: false).encoded }
            let cut = Array(bytes[0..<Int.random(in: 0...bytes.count, using: &rng)])
            let reference = try #require(hiredisReplyEnds(cut))
            let out = scan(cut)
            #expect(out.replies.map(\.end) == reference)
            #expect(out.partial == cut.count - (reference.last ?? 0))
        }
    }
}
