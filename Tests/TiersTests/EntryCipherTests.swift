import Glibc
import Testing
@testable import Tiers

/// `tier-encryption-key`: sealed envelopes (version 2), Cosmos documents and key handling.
@Suite struct EntryCipherTests {
    static let keyA = Base64.encode((0..<32).map { UInt8($0) })
    static let keyB = Base64.encode((0..<32).map { UInt8(200 - $0) })

    static func cipher(_ current: String = keyA, old: [String] = []) throws -> EntryCipher {
        EntryCipher(keys: try EncryptionKeys(current: current, old: old))
    }

    /// `bytes` with its trailing CRC recomputed, as a forger would.
    static func fixCRC(_ bytes: [UInt8]) -> [UInt8] {
        var out = Array(bytes.dropLast(4))
        let crc = EntryEnvelope.crc32Of(out[...])
        for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i)))) }
        return out
    }

    static func contains(_ hay: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= hay.count else { return false }
        return (0...(hay.count - needle.count)).contains { Array(hay[$0..<($0 + needle.count)]) == needle }
    }

    static func message(_ body: () throws -> Void) -> String {
        do { try body(); return "" } catch { return "\(error)" }
    }

    @Test func sealedEnvelopeRoundTripsAndHidesTheValue() throws {
        let c = try Self.cipher()
        let key = TierKey(db: 3, Array("user:ü".utf8))
        let secret = Array("très secret value ✓".utf8)
        for entry in [Entry(value: secret), Entry(value: [], type: .hash, expiresAtMillis: 1_700_000_000_123),
                      Entry(value: secret + Array(repeating: 7, count: 100_000), type: .zset, expiresAtMillis: -5)] {
            let bytes = try EntryEnvelope.encode(key: key, entry: entry, cipher: c)
            #expect(Array(bytes.prefix(4)) == [0x54, 0x50, 0x45, 0x02])
            #expect(bytes[4] == 0 && bytes[5] == 0)              // type and encoding are inside the seal
            #expect(!Self.contains(bytes, secret))
            let contents = try EntryEnvelope.decode(bytes, cipher: c)
            #expect(contents.key == key)
            #expect(try contents.entry(valueLimit: 1 << 20) == entry)
        }
        // A random nonce per entry: the same entry seals differently each time.
        let e = Entry(value: secret)
        #expect(try EntryEnvelope.encode(key: key, entry: e, cipher: c) != EntryEnvelope.encode(key: key, entry: e, cipher: c))
    }

    @Test func compressionComesBeforeEncryption() throws {
        let c = try Self.cipher()
        let entry = Entry(value: Array(repeating: 65, count: 50_000))
        let bytes = try EntryEnvelope.encode(key: TierKey("k"), entry: entry, storedValue: Gzip.compress(entry.value),
                                             encoding: .gzip, cipher: c)
        #expect(bytes.count < 1000)
        let contents = try EntryEnvelope.decode(bytes, cipher: c)
        #expect(contents.encoding == .gzip)
        #expect(try contents.entry(valueLimit: 50_000) == entry)
    }

    @Test func oldKeysStillReadAfterARotation() throws {
        let key = TierKey("k")
        let entry = Entry(value: Array("v1".utf8))
        let before = try EntryEnvelope.encode(key: key, entry: entry, cipher: try Self.cipher(Self.keyA))
        let rotated = try Self.cipher(Self.keyB, old: [Self.keyA])
        #expect(try EntryEnvelope.decode(before, cipher: rotated).entry(valueLimit: 100) == entry)
        // New writes use the new key: a proxy with only the old key cannot read them.
        let after = try EntryEnvelope.encode(key: key, entry: entry, cipher: rotated)
        #expect(Array(after[41..<49]) == (try EncryptionKey(base64: Self.keyB, what: "b")).id)
        #expect(Self.message { _ = try EntryEnvelope.decode(after, cipher: try Self.cipher(Self.keyA)) }.contains("which is neither"))
    }

    @Test func unknownKeyIdIsAnErrorNamingTheId() throws {
        let bytes = try EntryEnvelope.encode(key: TierKey("k"), entry: Entry(value: [1]), cipher: try Self.cipher(Self.keyA))
        let id = (try EncryptionKey(base64: Self.keyA, what: "a")).idHex
        let m = Self.message { _ = try EntryEnvelope.decode(bytes, cipher: try Self.cipher(Self.keyB)) }
        #expect(m.hasPrefix("corrupt entry: entry was encrypted with key id \(id)"))
    }

    @Test func anyFlippedByteFailsEvenWithTheCRCForged() throws {
        let c = try Self.cipher()
        let bytes = try EntryEnvelope.encode(key: TierKey("key"), entry: Entry(value: Array("value".utf8), expiresAtMillis: 5),
                                             cipher: c)
        for i in 0..<(bytes.count - 4) {
            var damaged = bytes
            damaged[i] ^= 0x10
            #expect(throws: TierError.self) { try EntryEnvelope.decode(damaged, cipher: c) }
            #expect(throws: TierError.self) { try EntryEnvelope.decode(Self.fixCRC(damaged), cipher: c) }
        }
        var inCiphertext = bytes
        inCiphertext[bytes.count - 4 - 17] ^= 1              // last ciphertext byte, before the tag
        #expect(Self.message { _ = try EntryEnvelope.decode(Self.fixCRC(inCiphertext), cipher: c) }.contains("failed authentication"))
    }

    @Test func anEntryMovedToAnotherKeyDbOrExpiryFailsAuthentication() throws {
        let c = try Self.cipher()
        let entry = Entry(value: Array("balance=100".utf8), expiresAtMillis: 1000)
        let sealed = try c.seal(key: TierKey(db: 0, "alice"), expiresAtMillis: 1000, type: .string, encoding: .raw,
                                storedValue: entry.value)
        #expect(try c.open(sealed, key: TierKey(db: 0, "alice"), expiresAtMillis: 1000).storedValue == entry.value)
        for (key, expiry) in [(TierKey(db: 0, "mallory"), Int64(1000)), (TierKey(db: 1, "alice"), 1000),
                              (TierKey(db: 0, "alice"), 9_999_999), (TierKey(db: 0, "alice"), nil)] as [(TierKey, Int64?)] {
            #expect(Self.message { _ = try c.open(sealed, key: key, expiresAtMillis: expiry) }.contains("failed authentication"))
        }
        // The same through an envelope whose clear header was rewritten to another key of equal length.
        let bytes = try EntryEnvelope.encode(key: TierKey("alice"), entry: entry, cipher: c)
        var moved = bytes
        for (i, b) in "carol".utf8.enumerated() { moved[28 + i] = b }
        #expect(Self.message { _ = try EntryEnvelope.decode(Self.fixCRC(moved), cipher: c) }.contains("failed authentication"))
    }

    @Test func plaintextEraEntriesStayReadableAndSealedOnesNeedAKey() throws {
        let c = try Self.cipher()
        let entry = Entry(value: Array("written before encryption".utf8), type: .list, expiresAtMillis: 42)
        let plain = EntryEnvelope.encode(key: TierKey("k"), entry: entry)
        #expect(try EntryEnvelope.encode(key: TierKey("k"), entry: entry, cipher: nil) == plain)   // no key: same bytes
        #expect(try EntryEnvelope.decode(plain, cipher: c).entry(valueLimit: 100) == entry)
        let sealed = try EntryEnvelope.encode(key: TierKey("k"), entry: entry, cipher: c)
        #expect(Self.message { _ = try EntryEnvelope.decode(sealed) }.contains("no tier-encryption-key is configured"))
    }

    @Test func badKeysAreRefusedWithoutShowingThem() {
        let short = Base64.encode([UInt8](repeating: 9, count: 31))
        let m1 = Self.message { _ = try EncryptionKey(base64: short, what: "tier-encryption-key") }
        #expect(m1.contains("decodes to 31 bytes") && !m1.contains(short))
        let m2 = Self.message { _ = try EncryptionKeys(current: Self.keyA, old: ["not*base64"]) }
        #expect(m2.contains("tier-encryption-old-keys entry 1 is not base64") && !m2.contains("not*base64"))
        let keys = try? EncryptionKeys(current: Self.keyA, old: [Self.keyB])
        #expect(keys.map { "\($0)" }?.contains(Self.keyA) == false)
        #expect(keys.map { "\($0)" }?.contains("1 old key") == true)
    }

    @Test func anUnresolvedKeyVaultKeyWritesNothing() throws {
        let c = EntryCipher(keys: try EncryptionKeys(current: "keyvault://vault/tier-key", old: []))
        let m = Self.message { _ = try EntryEnvelope.encode(key: TierKey("k"), entry: Entry(value: [1]), cipher: c) }
        #expect(m.contains("not resolved yet"))
        c.keys.currentSetting.set(Secret(Self.keyA))
        try c.keys.reload()
        let sealed = try EntryEnvelope.encode(key: TierKey("k"), entry: Entry(value: [1]), cipher: c)
        // A rotation picked up on SIGHUP keeps the replaced key readable.
        c.keys.currentSetting.set(Secret(Self.keyB))
        try c.keys.reload()
        #expect(try EntryEnvelope.decode(sealed, cipher: c).entry(valueLimit: 10) == Entry(value: [1]))
        c.keys.currentSetting.set(Secret("short"))
        #expect(throws: TierError.self) { try c.keys.reload() }
    }

    @Test func cosmosDocumentsSealValueAndTypeButKeepLookupFieldsInClear() throws {
        let c = try Self.cipher()
        let key = TierKey(db: 2, Array("profile:7".utf8))
        let entry = Entry(value: Array("{\"name\":\"Ada\"}".utf8), type: .hash, expiresAtMillis: 4_000_000_000_000)
        let id = TierNames.cosmosID(key)
        let body = try CosmosDocument.encode(key: key, entry: entry, id: id, partitionKeyProperty: "id", nowMillis: 0, cipher: c)
        let text = String(decoding: body, as: UTF8.self)
        #expect(!text.contains("Ada") && !text.contains(Base64.encode(entry.value)) && !text.contains("\"hash\""))
        #expect(text.contains("\"tp_enc\":\"aes-256-gcm\"") && text.contains("\"tp_exp\":\"4000000000000\"") && text.contains("\"value\":null"))
        #expect(try CosmosDocument.decode(body, wanted: key, nowMillis: 0, valueLimit: 1 << 20, cipher: c) == .entry(entry))
        #expect(Self.message { _ = try CosmosDocument.decode(body, wanted: key, nowMillis: 0, valueLimit: 1 << 20) }
            .contains("no tier-encryption-key"))
        // A later expiry written into the clear field is caught by the seal.
        let extended = Array(text.replacingOccurrences("4000000000000", "4999999999999").utf8)
        #expect(Self.message { _ = try CosmosDocument.decode(extended, wanted: key, nowMillis: 0, valueLimit: 1 << 20, cipher: c) }
            .contains("failed authentication"))
        // Seed-era items (no tp_enc) read as before.
        let seed = Array("{\"id\":\"profile:7\",\"pk\":\"profile:7\",\"value\":\"plain\"}".utf8)
        #expect(try CosmosDocument.decode(seed, wanted: TierKey("profile:7"), nowMillis: 0, valueLimit: 100, cipher: c)
            == .entry(Entry(value: Array("plain".utf8))))
    }

    @Test func metadataMarksSealedEntriesSoOldReadersRefuseThem() throws {
        let m = EntryMetadata(key: TierKey("k"), entry: Entry(value: [1], type: .set), name: "k", encoding: .gzip, sealed: true)
        #expect(m.fields.map(\.name) == ["tp_enc"] && m.fields[0].value == "aes-256-gcm")
        let parsed = try EntryMetadata.parse { $0 == "tp_enc" ? "aes-256-gcm" : nil }
        #expect(parsed.sealed && parsed.type == .string)
    }

    @Test func threadsSealAndOpenConcurrently() throws {
        final class Shared: @unchecked Sendable {
            let cipher: EntryCipher
            var failures = 0
            var lock = pthread_mutex_t()
            init(_ c: EntryCipher) { cipher = c; pthread_mutex_init(&lock, nil) }
        }
        let shared = Shared(try Self.cipher())
        var threads = [pthread_t]()
        let context = Unmanaged.passRetained(shared)
        for _ in 0..<4 {
            var t = pthread_t()
            pthread_create(&t, nil, { raw in
                let shared = Unmanaged<Shared>.fromOpaque(raw!).takeUnretainedValue()
                let c = shared.cipher
                for i in 0..<500 {
                    let key = TierKey(db: i, "k\(i)")
                    let value = Array("value \(i)".utf8)
                    let ok = (try? c.open(c.seal(key: key, expiresAtMillis: nil, type: .string, encoding: .raw, storedValue: value),
                                          key: key, expiresAtMillis: nil).storedValue) == value
                    if !ok { pthread_mutex_lock(&shared.lock); shared.failures += 1; pthread_mutex_unlock(&shared.lock) }
                }
                return nil
            }, context.toOpaque())
            threads.append(t)
        }
        for t in threads { pthread_join(t, nil) }
        context.release()
        #expect(shared.failures == 0)
    }
}

private extension String {
    func replacingOccurrences(_ a: String, _ b: String) -> String {
        var out = ""
        var rest = Substring(self)
        while let r = rest.firstRange(of: a) {
            out += rest[..<r.lowerBound] + b
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}
