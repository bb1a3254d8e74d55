import Testing
@testable import Tiers

@Suite struct EntryEnvelopeTests {
    @Test func roundTripsEveryField() throws {
        let key = TierKey(db: 7, [0, 1, 2, 255])
        for entry in [Entry(value: []), Entry(value: [9], type: .hash, expiresAtMillis: 1_700_000_000_123),
                      Entry(value: Array(repeating: 3, count: 100_000), type: .stream, expiresAtMillis: -5)] {
            let bytes = EntryEnvelope.encode(key: key, entry: entry)
            #expect(Array(bytes.prefix(4)) == [0x54, 0x50, 0x45, 0x01])
            let c = try EntryEnvelope.decode(bytes)
            #expect(c.key == key)
            #expect(c.encoding == .raw)
            #expect(try c.entry(valueLimit: 1 << 20) == entry)
        }
    }

    @Test func gzipValuesDecodeTransparently() throws {
        let entry = Entry(value: Array(repeating: 65, count: 50_000))
        let bytes = EntryEnvelope.encode(key: TierKey("k"), entry: entry, storedValue: Gzip.compress(entry.value),
                                         encoding: .gzip)
        #expect(bytes.count < 1000)
        let c = try EntryEnvelope.decode(bytes)
        #expect(c.encoding == .gzip)
        #expect(try c.entry(valueLimit: 50_000) == entry)
        #expect(throws: TierError.tooLarge(limit: 10)) { try c.entry(valueLimit: 10) }
    }

    @Test func everyTruncationAndBitFlipIsCorrupt() {
        let bytes = EntryEnvelope.encode(key: TierKey("key"), entry: Entry(value: Array("value".utf8), expiresAtMillis: 5))
        for n in 0..<bytes.count {
            #expect(throws: TierError.self) { try EntryEnvelope.decode(Array(bytes.prefix(n))) }
        }
        for i in 0..<bytes.count {
            var damaged = bytes
            damaged[i] ^= 0x10
            #expect(throws: TierError.self) { try EntryEnvelope.decode(damaged) }
        }
    }

    @Test func metadataFieldsRoundTripAndStaySeedShaped() throws {
        // A plain db-0 string under its own name: no tp_* fields at all, like the seed's items.
        let plain = TierKey("user:1")
        #expect(EntryMetadata(key: plain, entry: Entry(value: [1]), name: TierNames.cosmosID(plain)).fields.isEmpty)
        #expect(try EntryMetadata.parse { _ in nil } == EntryMetadata())
        #expect(EntryMetadata().belongs(to: plain))

        let key = TierKey(db: 2, [0xff, 0, 0x3e])
        let entry = Entry(value: [1], type: .zset, expiresAtMillis: 1234)
        let m = EntryMetadata(key: key, entry: entry, name: TierNames.blobName(key), encoding: .gzip)
        let fields = Dictionary(uniqueKeysWithValues: m.fields.map { ($0.name, $0.value) })
        #expect(fields == ["tp_type": "zset", "tp_exp": "1234", "tp_enc": "gzip", "tp_db": "2", "tp_key": "/wA+"])
        let back = try EntryMetadata.parse { fields[$0] }
        #expect(back == m)
        #expect(back.belongs(to: key))
        #expect(!back.belongs(to: TierKey(db: 2, [0xff])))
        #expect(!back.belongs(to: TierKey(db: 0, [0xff, 0, 0x3e])))
        #expect(back.entry(value: [1]) == entry)
        #expect(throws: TierError.self) { try EntryMetadata.parse { $0 == "tp_exp" ? "soon" : nil } }
        #expect(throws: TierError.self) { try EntryMetadata.parse { $0 == "tp_key" ? "-_==" : nil } }
        #expect(EntryMetadata.base64([]) == [] && EntryMetadata.base64(Array("ab".utf8)) == Array("YWI=".utf8))
    }
}
