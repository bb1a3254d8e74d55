import Testing
@testable import Tiers

@Suite struct GzipTests {
    @Test func roundTripsEmptySmallAndLarge() throws {
        for size in [0, 1, 1000, 3_000_000] {
            var rng = SplitMix(seed: UInt64(size))
            // Half random, half repetitive: exercises both stored and compressed deflate blocks.
            let bytes = (0..<size).map { i in i % 2 == 0 ? UInt8(truncatingIfNeeded: rng.next()) : 7 }
            let z = Gzip.compress(bytes)
            #expect(Gzip.isGzip(z))
            #expect(try Gzip.decompress(z, limit: size) == bytes)
        }
    }

    @Test func bombStopsAtLimit() throws {
        let bomb = Gzip.compress([UInt8](repeating: 0, count: 20_000_000))
        #expect(bomb.count < 100_000)
        #expect(throws: TierError.tooLarge(limit: 1_000_000)) { try Gzip.decompress(bomb, limit: 1_000_000) }
        // Exactly at the limit is allowed.
        #expect(try Gzip.decompress(bomb, limit: 20_000_000).count == 20_000_000)
    }

    @Test func concatenatedMembersDecodeAsOne() throws {
        let z = Gzip.compress(Array("hello ".utf8)) + Gzip.compress(Array("world".utf8))
        #expect(try Gzip.decompress(z, limit: 100) == Array("hello world".utf8))
    }

    @Test func damageIsCorruptNotACrash() {
        let z = Gzip.compress(Array(repeating: 42, count: 10_000))
        #expect(!Gzip.isGzip(Array("plain".utf8)))
        #expect(throws: TierError.self) { try Gzip.decompress(Array(z.prefix(z.count / 2)), limit: 1 << 20) }
        #expect(throws: TierError.self) { try Gzip.decompress(z + [1, 2, 3, 4], limit: 1 << 20) }
        var flipped = z
        flipped[z.count - 6] ^= 0xFF  // CRC in the trailer
        #expect(throws: TierError.self) { try Gzip.decompress(flipped, limit: 1 << 20) }
        #expect(throws: TierError.self) { try Gzip.decompress(Array("plain".utf8), limit: 1 << 20) }
    }
}

/// Deterministic pseudo-random bytes for tests.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) } }
}
