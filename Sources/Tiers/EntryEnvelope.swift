import CZlib

/// The binary envelope the SQLite and directory tiers store: one entry with its original key and
/// db, so a file or row is self-describing (hash-named files can be checked, a directory can be
/// re-indexed) and damage is detected instead of served.
///
/// ## Format, version 1 (all integers little-endian)
///
///     offset  size  field
///     0       4     magic: "TPE" + version byte 0x01
///     4       1     type: 0 string, 1 list, 2 set, 3 zset, 4 hash, 5 stream
///     5       1     encoding of the stored value: 0 raw, 1 gzip
///     6       1     flags: bit 0 = has expiry; other bits must be 0
///     7       1     reserved, 0
///     8       8     expiry, Unix milliseconds (signed); 0 when flag bit 0 is clear
///     16      8     db (signed)
///     24      4     key length K
///     28      K     key bytes
///     28+K    8     stored value length V
///     36+K    V     stored value bytes (gzip when encoding = 1)
///     36+K+V  4     CRC-32 (zlib/IEEE) of every byte before it
///
/// A reader rejects (as `.corrupt`) a wrong magic or version, unknown type, encoding or flags,
/// lengths that do not add up to the buffer, and a CRC mismatch: a torn or damaged entry is
/// never served as data. A new layout gets a new version byte; readers keep version 1.
///
/// ## Version 2: encrypted (`tier-encryption-key`)
///
/// The same layout with version byte 0x02, type and encoding bytes 0, and the stored value
/// replaced by an `EntryCipher` sealed value (which holds the real type, encoding and value).
/// Key, db and expiry stay in clear (lookups, purges by db and lazy expiry need them) and are
/// authenticated by the seal. Entries written before encryption was turned on stay version 1 and
/// read as before; with no key configured, writes are version 1, byte for byte as always.
public enum EntryEnvelope {
    public static let magic: [UInt8] = [0x54, 0x50, 0x45, 0x01]
    static let sealedVersion: UInt8 = 2
    static let fixedSize = 28 + 8 + 4

    /// What an envelope holds, before any decompression.
    public struct Contents: Equatable, Sendable {
        public var key: TierKey
        public var type: ValueType
        public var expiresAtMillis: Int64?
        public var encoding: ValueEncoding
        /// The value as stored (gzip bytes when `encoding == .gzip`).
        public var storedValue: [UInt8]

        /// The entry with its value decoded; decompression output is bounded by `valueLimit`.
        public func entry(valueLimit: Int) throws(TierError) -> Entry {
            let value = encoding == .gzip ? try Gzip.decompress(storedValue, limit: valueLimit) : storedValue
            return Entry(value: value, type: type, expiresAtMillis: expiresAtMillis)
        }
    }

    /// Encodes `entry` for `key`. `storedValue` replaces `entry.value` when the caller already
    /// compressed it (then `encoding` says how).
    public static func encode(key: TierKey, entry: Entry, storedValue: [UInt8]? = nil,
                              encoding: ValueEncoding = .raw) -> [UInt8] {
        layout(version: magic[3], key: key, expiresAtMillis: entry.expiresAtMillis, typeCode: entry.type.code,
               encodingCode: encoding.code, value: storedValue ?? entry.value)
    }

    /// Encodes `entry` as version 1, or sealed as version 2 when `cipher` is given.
    public static func encode(key: TierKey, entry: Entry, storedValue: [UInt8]? = nil, encoding: ValueEncoding = .raw,
                              cipher: EntryCipher?) throws(TierError) -> [UInt8] {
        guard let cipher else { return encode(key: key, entry: entry, storedValue: storedValue, encoding: encoding) }
        let sealed = try cipher.seal(key: key, expiresAtMillis: entry.expiresAtMillis, type: entry.type, encoding: encoding,
                                     storedValue: storedValue ?? entry.value)
        return layout(version: sealedVersion, key: key, expiresAtMillis: entry.expiresAtMillis, typeCode: 0, encodingCode: 0,
                      value: sealed)
    }

    private static func layout(version: UInt8, key: TierKey, expiresAtMillis: Int64?, typeCode: UInt8, encodingCode: UInt8,
                               value: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(fixedSize + key.bytes.count + value.count)
        out += magic[0..<3]
        out.append(version)
        out.append(typeCode)
        out.append(encodingCode)
        out.append(expiresAtMillis == nil ? 0 : 1)
        out.append(0)
        appendLE(&out, UInt64(bitPattern: expiresAtMillis ?? 0), 8)
        appendLE(&out, UInt64(bitPattern: Int64(key.db)), 8)
        appendLE(&out, UInt64(key.bytes.count), 4)
        out += key.bytes
        appendLE(&out, UInt64(value.count), 8)
        out += value
        appendLE(&out, UInt64(crc32Of(out[...])), 4)
        return out
    }

    /// Decodes and verifies an envelope, opening a version-2 (encrypted) one with `cipher`.
    /// Throws `.corrupt` with what is wrong; a version-2 entry without a cipher, with an unknown
    /// key id or a failed tag is an error too, never a miss.
    public static func decode(_ bytes: [UInt8], cipher: EntryCipher? = nil) throws(TierError) -> Contents {
        guard bytes.count >= fixedSize else { throw .corrupt("entry of \(bytes.count) bytes is shorter than any envelope") }
        guard bytes[0] == magic[0], bytes[1] == magic[1], bytes[2] == magic[2] else {
            throw .corrupt("not a tierproxy entry (bad magic)")
        }
        let version = bytes[3]
        guard version == magic[3] || version == sealedVersion else {
            throw .corrupt("entry format version \(version) is not supported (only 1 and 2)")
        }
        let sealed = version == sealedVersion
        guard let type = ValueType(code: bytes[4]), !sealed || bytes[4] == 0 else { throw .corrupt("unknown value type code \(bytes[4])") }
        guard let encoding = ValueEncoding(code: bytes[5]), !sealed || bytes[5] == 0 else {
            throw .corrupt("unknown value encoding code \(bytes[5])")
        }
        let flags = bytes[6]
        guard flags & ~1 == 0, bytes[7] == 0 else { throw .corrupt("unknown entry flags \(flags)") }
        let crcAt = bytes.count - 4
        let storedCRC = UInt32(readLE(bytes, crcAt, 4))
        guard storedCRC == crc32Of(bytes[..<crcAt]) else { throw .corrupt("checksum mismatch (torn or damaged entry)") }

        let expiry = Int64(bitPattern: readLE(bytes, 8, 8))
        let db = Int64(bitPattern: readLE(bytes, 16, 8))
        let keyCount = Int(readLE(bytes, 24, 4))
        // Lengths are checked against what is left, so no overflow and no read past the end.
        guard keyCount <= crcAt - 36 else { throw .corrupt("key length \(keyCount) exceeds the entry") }
        let valueAt = 28 + keyCount + 8
        let valueLength = readLE(bytes, 28 + keyCount, 8)
        guard valueLength == UInt64(crcAt - valueAt) else { throw .corrupt("value length \(valueLength) does not match the entry") }
        guard let dbInt = Int(exactly: db) else { throw .corrupt("db \(db) out of range") }
        var contents = Contents(key: TierKey(db: dbInt, Array(bytes[28..<28 + keyCount])), type: type,
                                expiresAtMillis: flags & 1 == 1 ? expiry : nil, encoding: encoding,
                                storedValue: Array(bytes[valueAt..<crcAt]))
        if sealed {
            guard let cipher else { throw EntryCipher.notConfigured }
            let opened = try cipher.open(contents.storedValue, key: contents.key, expiresAtMillis: contents.expiresAtMillis)
            contents.type = opened.type
            contents.encoding = opened.encoding
            contents.storedValue = opened.storedValue
        }
        return contents
    }

    static func crc32Of(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        bytes.withUnsafeBufferPointer { p in
            var crc: uLong = crc32(0, nil, 0)
            var base = p.baseAddress
            var left = p.count
            // zlib's length is a 32-bit uInt: feed huge buffers in chunks.
            while left > 0, let b = base {
                let n = min(left, 1 << 30)
                crc = crc32(crc, b, uInt(n))
                base = b + n
                left -= n
            }
            return UInt32(truncatingIfNeeded: crc)
        }
    }

    private static func appendLE(_ out: inout [UInt8], _ v: UInt64, _ size: Int) {
        for i in 0..<size { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }

    private static func readLE(_ bytes: [UInt8], _ at: Int, _ size: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in (0..<size).reversed() { v = v << 8 | UInt64(bytes[at + i]) }
        return v
    }
}

extension ValueType {
    /// The byte stored in envelopes. Never renumber.
    var code: UInt8 {
        switch self {
        case .string: return 0
        case .list: return 1
        case .set: return 2
        case .zset: return 3
        case .hash: return 4
        case .stream: return 5
        }
    }

    init?(code: UInt8) {
        switch code {
        case 0: self = .string
        case 1: self = .list
        case 2: self = .set
        case 3: self = .zset
        case 4: self = .hash
        case 5: self = .stream
        default: return nil
        }
    }
}

extension ValueEncoding {
    /// The byte stored in envelopes. Never renumber.
    var code: UInt8 { self == .raw ? 0 : 1 }

    init?(code: UInt8) {
        switch code {
        case 0: self = .raw
        case 1: self = .gzip
        default: return nil
        }
    }
}
