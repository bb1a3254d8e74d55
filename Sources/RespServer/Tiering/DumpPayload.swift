import Tiers

/// What the proxy reads of a `DUMP` payload (Redis's rdb.h and rdb.c): the payload is one RDB
/// object (its type byte, then its encoding), the RDB version (2 bytes) and a CRC64 (8 bytes).
/// The type byte names the Redis type; a string's bytes are decoded so that strings are stored
/// below as themselves whatever command wrote them. Everything else is Redis's to check:
/// `RESTORE` verifies the CRC and refuses a payload from a newer RDB version.
enum DumpPayload {
    /// The Redis type an RDB object type byte stands for; nil for a module's type (or a newer one).
    static func type(_ payload: [UInt8]) -> ValueType? {
        guard let first = payload.first else { return nil }
        switch first {
        case 0: return .string
        case 1, 10, 14, 18: return .list             // linked list, ziplist, quicklist, quicklist 2
        case 2, 11, 20: return .set                  // hash table, intset, listpack
        case 3, 5, 12, 17: return .zset              // skiplist, skiplist 2, ziplist, listpack
        case 4, 9, 13, 16: return .hash              // hash table, zipmap, ziplist, listpack
        case 15, 19, 21: return .stream              // listpacks 1, 2 and 3
        default: return nil
        }
    }

    /// The RDB version a payload was written with (the 2 little-endian bytes before its CRC64).
    static func rdbVersion(_ payload: [UInt8]) -> Int? {
        guard payload.count >= 11 else { return nil }
        let at = payload.count - 10
        return Int(payload[at]) | Int(payload[at + 1]) << 8
    }

    /// The bytes of a string payload (type 0): raw, an integer, or LZF-compressed. Nil if the
    /// payload is not one whole string object followed by the 10-byte trailer.
    static func string(_ payload: [UInt8]) -> [UInt8]? {
        guard payload.count >= 12, payload[0] == 0 else { return nil }
        var reader = Reader(bytes: payload, at: 1, end: payload.count - 10)
        guard let value = reader.stringObject(), reader.at == reader.end else { return nil }
        return value
    }

    private struct Reader {
        let bytes: [UInt8]
        var at: Int
        let end: Int

        mutating func byte() -> UInt8? {
            guard at < end else { return nil }
            defer { at += 1 }
            return bytes[at]
        }

        mutating func take(_ n: Int) -> ArraySlice<UInt8>? {
            guard n >= 0, n <= end - at else { return nil }
            defer { at += n }
            return bytes[at..<at + n]
        }

        /// An unsigned integer of `n` bytes, big-endian (`bigEndian`) or little-endian.
        mutating func unsigned(_ n: Int, bigEndian: Bool) -> UInt64? {
            guard let b = take(n) else { return nil }
            let ordered = bigEndian ? Array(b) : b.reversed()
            return ordered.reduce(0) { $0 << 8 | UInt64($1) }
        }

        /// rdbLoadLen: a length, or (`encoded`) the number of a special encoding.
        mutating func length() -> (value: Int, encoded: Bool)? {
            guard let first = byte() else { return nil }
            switch first >> 6 {
            case 0: return (Int(first & 0x3F), false)
            case 1:
                guard let second = byte() else { return nil }
                return (Int(first & 0x3F) << 8 | Int(second), false)
            case 3: return (Int(first & 0x3F), true)
            default:
                let width = first == 0x80 ? 4 : first == 0x81 ? 8 : 0
                guard width > 0, let n = unsigned(width, bigEndian: true), n <= UInt64(Int.max) else { return nil }
                return (Int(n), false)
            }
        }

        mutating func stringObject() -> [UInt8]? {
            guard let (n, encoded) = length() else { return nil }
            guard encoded else { return take(n).map(Array.init) }
            switch n {
            case 0, 1, 2:
                let width = 1 << n
                guard let u = unsigned(width, bigEndian: false) else { return nil }
                let shift = UInt64(64 - 8 * width)
                let signed = Int64(bitPattern: u << shift) >> Int64(shift)
                return Array(String(signed).utf8)
            case 3:
                guard let (compressed, _) = length(), let (expanded, _) = length(),
                      let input = take(compressed) else { return nil }
                return LZF.decompress(input, count: expanded)
            default:
                return nil
            }
        }
    }
}

/// LZF decompression (the format of Marc Lehmann's liblzf, which Redis uses for RDB strings):
/// a control byte below 32 starts a run of that many plus one literal bytes; any other is a back
/// reference of (ctrl >> 5) + 2 bytes (an extra length byte when that is 7 + 2) at a distance
/// of ((ctrl & 31) << 8 | next byte) + 1. Every reference and run is bounds-checked.
enum LZF {
    static func decompress(_ input: ArraySlice<UInt8>, count: Int) -> [UInt8]? {
        var out = [UInt8]()
        out.reserveCapacity(count)
        var i = input.startIndex
        while i < input.endIndex {
            let ctrl = Int(input[i])
            i += 1
            if ctrl < 32 {
                let run = ctrl + 1
                guard run <= input.endIndex - i, out.count + run <= count else { return nil }
                out += input[i..<i + run]
                i += run
                continue
            }
            var length = ctrl >> 5
            if length == 7 {
                guard i < input.endIndex else { return nil }
                length += Int(input[i])
                i += 1
            }
            guard i < input.endIndex else { return nil }
            let distance = ((ctrl & 0x1F) << 8 | Int(input[i])) + 1
            i += 1
            length += 2
            guard distance <= out.count, out.count + length <= count else { return nil }
            var from = out.count - distance
            for _ in 0..<length {      // byte by byte: a reference may overlap what it writes
                out.append(out[from])
                from += 1
            }
        }
        return out.count == count ? out : nil
    }
}
