/// One record of the key log, and the byte format of the log file.
///
/// ```
/// file   := header record*
/// header := "TPKL" u32le(version = 1)                       8 bytes
/// record := u32le(n) u32le(crc) body                        8 + n bytes
/// body   := u8(op) u64le(sequence) i64le(db) i64le(since) key-bytes
///           op:       1 dirty, 2 delete, 3 done
///           sequence: dirty/delete: the op's own, strictly increasing in file order (one
///                     counter per log, continued from the largest replayed); done: the
///                     sequence of the op it completes
///           since:    Unix ms when the key became pending (kept while it stays pending;
///                     0 in done records), so backlog age survives restarts and compaction
///           key:      the raw Redis key, n - 25 bytes
///           crc:      zlib CRC-32 of the body
/// ```
///
/// Records name keys, never values: the flusher reads a key's current state from hot when it
/// flushes, so repeated writes coalesce and the lower tier never ends older than hot.
///
/// Replay applies records in file order: dirty and delete make the key pending with that op
/// and sequence (the latest op wins); done(s) clears the key if its pending sequence is s.
/// A crash can only tear the tail (every completion waited for `fdatasync`), so replay stops at
/// the first record that is short, oversized or fails its CRC, and the file is cut back there.
struct KeyLogRecord: Equatable {
    enum Kind: UInt8 {
        case dirty = 1
        case delete = 2
        case done = 3
    }

    var kind: Kind
    var sequence: UInt64
    var key: TierKey
    var sinceMillis: Int64

    static let header: [UInt8] = Array("TPKL".utf8) + [1, 0, 0, 0]
    static let framing = 8
    static let fixedBody = 25
    /// Longest body replay accepts: a Redis key is at most 512 MB. A longer length is garbage.
    static let maxBody = fixedBody + 512 << 20

    /// Appends this record's bytes to `out`.
    func encode(into out: inout [UInt8]) {
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: Self.framing))  // length and CRC, filled below
        out.append(kind.rawValue)
        Self.appendLE(&out, sequence)
        Self.appendLE(&out, UInt64(bitPattern: Int64(key.db)))
        Self.appendLE(&out, UInt64(bitPattern: sinceMillis))
        out.append(contentsOf: key.bytes)
        let bodyCount = out.count - start - Self.framing
        let crc = EntryEnvelope.crc32Of(out[(start + Self.framing)...])
        Self.storeLE(&out, at: start, UInt64(bodyCount))
        Self.storeLE(&out, at: start + 4, UInt64(crc))
    }

    var encoded: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(Self.framing + Self.fixedBody + key.bytes.count)
        encode(into: &out)
        return out
    }

    /// What replay found in a log file's bytes.
    struct Scan {
        var records: [KeyLogRecord] = []
        /// Offset just past the last valid record: where appends continue.
        var validEnd: Int
        /// Bytes after `validEnd` that were ignored (a torn tail).
        var tornBytes: Int
    }

    /// Parses `bytes` (a whole log file, header included). Throws only if the header is not a
    /// key log's; damage after it ends the scan.
    static func scan(_ bytes: [UInt8]) throws(TierError) -> Scan {
        guard bytes.count >= header.count else {
            // A crash while creating the file: nothing was ever acknowledged from it.
            return Scan(validEnd: 0, tornBytes: bytes.count)
        }
        guard Array(bytes[0..<4]) == Array(header[0..<4]) else {
            throw .corrupt("not a tierproxy key log (bad magic)")
        }
        guard Array(bytes[4..<8]) == Array(header[4..<8]) else {
            throw .corrupt("key log format version \(readLE(bytes, 4, 4)) is not supported (only 1)")
        }
        var scan = Scan(validEnd: header.count, tornBytes: 0)
        var at = header.count
        while bytes.count - at >= framing {
            let n = Int(readLE(bytes, at, 4))
            guard n >= fixedBody, n <= maxBody, n <= bytes.count - at - framing else { break }
            let body = at + framing
            guard UInt32(readLE(bytes, at + 4, 4)) == EntryEnvelope.crc32Of(bytes[body..<(body + n)]),
                  let kind = Kind(rawValue: bytes[body]),
                  let db = Int(exactly: Int64(bitPattern: readLE(bytes, body + 9, 8)))
            else { break }
            scan.records.append(KeyLogRecord(
                kind: kind, sequence: readLE(bytes, body + 1, 8),
                key: TierKey(db: db, Array(bytes[(body + fixedBody)..<(body + n)])),
                sinceMillis: Int64(bitPattern: readLE(bytes, body + 17, 8))))
            at = body + n
            scan.validEnd = at
        }
        scan.tornBytes = bytes.count - scan.validEnd
        return scan
    }

    private static func appendLE(_ out: inout [UInt8], _ v: UInt64) {
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }

    private static func storeLE(_ out: inout [UInt8], at: Int, _ v: UInt64) {
        for i in 0..<4 { out[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
    }

    private static func readLE(_ bytes: [UInt8], _ at: Int, _ size: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<size { v |= UInt64(bytes[at + i]) << (8 * UInt64(i)) }
        return v
    }
}
