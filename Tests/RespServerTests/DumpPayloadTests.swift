import Testing
@testable import RespServer
import Tiers

/// `DUMP` payloads read off a Redis 7.0.15 (hex): the type byte names the type, and a string's
/// bytes come back from each RDB string encoding (raw, int8/16/32, LZF); a payload that is cut
/// short or carries more than one object is refused, never misread.
@Suite struct DumpPayloadTests {
    private static func bytes(_ hex: String) -> [UInt8] {
        var out = [UInt8]()
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 2)
            out.append(UInt8(hex[i..<j], radix: 16)!)
            i = j
        }
        return out
    }

    static let strings: [(String, [UInt8])] = [
        ("000b68656c6c6f20776f726c640a000bfc49b9a6c7a034", Array("hello world".utf8)),
        ("00c0f40a004474ced75aa7ef82", Array("-12".utf8)),
        ("00c1b80b0a00a113c6f3de2b8403", Array("3000".utf8)),
        ("00c2006cca880a0035ffaebd7f1d7a67", Array("-2000000000".utf8)),
        ("00c30d40f40361626361e0e302037461696c0a001b98c77732bb8dd7",
         Array(String(repeating: "abcabcabcabc", count: 20).utf8) + Array("tail".utf8)),
        ("00000a005d9b5c400f7fa2da", []),
        ("00c341e480000046001f000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f1f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f1f606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f1f808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f1fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf1fc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf1fe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff0000e0ffffe1ffffe2ffffe3ffffe4ffffe5ffffe6ffffe7ffffe8ffffe9ffffeaffffebffffecffffedffffeeffffeffffff0fffff1fffff2fffff3fffff4fffff5fffff6fffff7fffff8fffff9fffffafffffbfffffcfffffdfffffeffffffffff05010203040506ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff050708090a0b0cffffffffffffffd8ff01feff0a00e3ab6ee6686b3d27", Array((0...255).map { UInt8($0) }.repeated(70))),
    ]

    @Test(arguments: 0..<strings.count)
    func everyStringEncodingDecodes(_ i: Int) {
        let (hex, value) = Self.strings[i]
        let payload = Self.bytes(hex)
        #expect(DumpPayload.type(payload) == .string)
        #expect(DumpPayload.string(payload) == value)
    }

    @Test func typeBytesOfRedis7() {
        // list quicklist 2, hash listpack, set intset, set hashtable, zset listpack, stream listpacks 2
        let seen: [(UInt8, ValueType)] = [(0x12, .list), (0x10, .hash), (0x0b, .set), (0x02, .set), (0x11, .zset), (0x13, .stream)]
        for (byte, type) in seen { #expect(DumpPayload.type([byte, 0, 0]) == type) }
        #expect(DumpPayload.type([6, 0]) == nil)       // a module's type
        #expect(DumpPayload.type([]) == nil)
    }

    /// The RDB version is the two little-endian bytes before the CRC64 (10 for Redis 7.0).
    @Test func rdbVersionOfEachPayload() {
        for (hex, _) in DumpPayloadTests.strings {
            #expect(DumpPayload.rdbVersion(DumpPayloadTests.bytes(hex)) == 10, "\(hex.prefix(20))")
        }
        var newer = DumpPayloadTests.bytes(DumpPayloadTests.strings[0].0)
        newer[newer.count - 10] = 0xff
        newer[newer.count - 9] = 0x01
        #expect(DumpPayload.rdbVersion(newer) == 511)
        #expect(DumpPayload.rdbVersion(Array(newer.suffix(10))) == nil, "no room for an object")
    }

    @Test func damagedStringPayloadsAreRefused() {
        let lzf = Self.bytes(Self.strings[4].0)
        #expect(DumpPayload.string(Array(lzf.dropLast(11))) == nil)                   // cut into the object
        #expect(DumpPayload.string(Array(lzf.prefix(3)) + Array(lzf.suffix(10))) == nil)
        var longer = Self.bytes(Self.strings[0].0)
        longer.insert(0x41, at: 13)                                                  // a byte more than its length
        #expect(DumpPayload.string(longer) == nil)
        #expect(DumpPayload.string(Self.bytes("0b0000")) == nil)                     // not a string
    }

    @Test func lzfReferencesOutsideTheOutputAreRefused() {
        #expect(LZF.decompress([0x20, 0x05][...], count: 3) == nil)       // a reference before any output
        #expect(LZF.decompress([0x02, 0x61, 0x62][...], count: 3) == nil) // a run past the input
        #expect(LZF.decompress([0x00, 0x61, 0x20, 0x00][...], count: 4) == Array("aaaa".utf8))
    }
}

private extension Array {
    func repeated(_ n: Int) -> [Element] { (0..<n).flatMap { _ in self } }
}
