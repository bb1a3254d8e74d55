import Testing
@testable import Tiers

@Suite struct TierNamesTests {
    @Test func seedKeysInDbZeroMapToThemselves() {
        for key in ["user:42", "session-abc", "cart:üñí", "日本語のキー", "a b", "emoji 🎉", "with/slash-in-blob"] {
            let k = TierKey(db: 0, key)
            #expect(TierNames.blobName(k) == key)
            if !key.contains("/") { #expect(TierNames.cosmosID(k) == key) }
        }
        #expect(TierNames.fileName(TierKey(db: 0, "user:42")) == "user:42")
    }

    @Test func fileNamesSayTheirDatabase() {
        let keys: [[UInt8]] = [Array("user:42".utf8), Array("User:42".utf8), [0xFF, 0], [UInt8](repeating: 0x61, count: 600), []]
        for db in [0, 1, 15, 123_456] {
            for key in keys { #expect(TierNames.db(ofFileName: TierNames.fileName(TierKey(db: db, key))) == db, "\(db) \(key.prefix(8))") }
        }
        for stray in [".tmp.12.3", ".check-probe", "~tp~", "~tp~x~abc", "~tp~1", "~tp~~abc", "Upper", "a b", ""] {
            #expect(TierNames.db(ofFileName: stray) == nil, "\(stray)")
        }
    }

    @Test func invalidIdsAreEncoded() {
        for key in ["a/b", "a\\b", "a?b", "a#b", "tab\there", "cr\rlf\n", "trailing ", "", "~tp~0~abc",
                    String(repeating: "x", count: 256)] {
            let id = TierNames.cosmosID(TierKey(db: 0, key))
            #expect(id.hasPrefix(TierNames.reservedPrefix), "\(key.debugDescription) -> \(id)")
            #expect(id.utf16.count <= 255)
        }
        for key in ["/lead", "a//b", "a/./b", "a/../b", "end.", "end/", "back\\slash", "nul\u{0}"] {
            #expect(TierNames.blobName(TierKey(db: 0, key)).hasPrefix(TierNames.reservedPrefix), "\(key)")
        }
        #expect(TierNames.fileName(TierKey(db: 0, "User:42")).hasPrefix(TierNames.reservedPrefix))
        #expect(TierNames.fileName(TierKey(db: 0, ".hidden")).hasPrefix(TierNames.reservedPrefix))
        // Invalid UTF-8 is never readable.
        #expect(TierNames.cosmosID(TierKey(db: 0, [0x61, 0xC3])).hasPrefix(TierNames.reservedPrefix))
    }

    @Test func otherDatabasesAndBinaryKeysAreEncodedAndDecodable() {
        let k = TierKey(db: 3, "user:42")
        #expect(TierNames.cosmosID(k) == "~tp~3~dXNlcjo0Mg")
        #expect(TierNames.key(fromCosmosIDOrBlobName: TierNames.cosmosID(k)) == k)
        let binary = TierKey(db: 0, [0, 255, 128, 10, 13])
        #expect(TierNames.key(fromCosmosIDOrBlobName: TierNames.blobName(binary)) == binary)
        #expect(TierNames.key(fromCosmosIDOrBlobName: "user:42") == TierKey(db: 0, "user:42"))
        #expect(TierNames.key(fromCosmosIDOrBlobName: "~tp~1~a") == nil)
    }

    @Test func longKeysGetHashNamesWithinLimits() {
        let long = TierKey(db: 0, String(repeating: "k", count: 600))
        let id = TierNames.cosmosID(long)
        #expect(TierNames.isHashed(id))
        #expect(id.count == "~tp~0~h~".count + 64)
        #expect(TierNames.blobName(long) == String(repeating: "k", count: 600))  // fits a blob name as is
        let huge = TierKey(db: 1, [UInt8](repeating: 1, count: 900))
        #expect(TierNames.isHashed(TierNames.blobName(huge)))
        #expect(TierNames.isHashed(TierNames.fileName(huge)))
        #expect(TierNames.fileName(huge).utf8.count <= 255)
        #expect(TierNames.key(fromCosmosIDOrBlobName: id) == nil)
    }

    @Test func namesAreStableAndInjective() {
        var rng = SplitMix(seed: 1)
        var keys = Set<TierKey>()
        for db in 0..<3 {
            for len in [0, 1, 2, 3, 5, 17, 150, 200, 300] {
                for _ in 0..<20 { keys.insert(TierKey(db: db, rng.bytes(len))) }
            }
            for text in ["a", "A", "~tp~", "~tp~0~YQ", "YQ", "a/b", "user:1", "User:1", "mfqq", "MFQQ"] {
                keys.insert(TierKey(db: db, text))
            }
        }
        for (label, namer) in [("cosmos", TierNames.cosmosID), ("blob", TierNames.blobName), ("file", TierNames.fileName)] {
            var seen = [String: TierKey]()
            for k in keys {
                let name = namer(k)
                #expect(namer(k) == name)
                if let other = seen[name] { Issue.record("\(label): \(k) and \(other) share \(name)") }
                seen[name] = k
            }
        }
        // File names stay distinct even on a case-insensitive file system.
        #expect(Set(keys.map { TierNames.fileName($0).lowercased() }).count == keys.count)
    }
}
