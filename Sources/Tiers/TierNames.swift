import COpenSSL

/// Maps a (db, key) to the name a backend stores it under: a Cosmos DB document id, a blob name,
/// a file name. People's data lives under these names: the scheme below must never change
/// meaning (add a new prefix instead).
///
/// ## The scheme
///
/// **Readable names.** A db-0 key that is already a valid name for the backend *is* its name, so
/// documents and blobs written by the seed library (`{"id": key, "pk": key, ...}`, blob name =
/// key) read back, and people can find their keys in the portal.
///
/// **Encoded names.** Every other (db, key) is stored as
///
///     ~tp~<db>~<base64url(key), no padding>
///
/// and, when that would pass the backend's length limit,
///
///     ~tp~<db>~h~<sha256(key), 64 lowercase hex digits>
///
/// `<db>` is the decimal database index. Readable names never start with `~tp~` (a db-0 key that
/// does is encoded), base64url never contains `~`, so readable, base64 and hash names never
/// collide, and the first two are injective. Hash names can in principle collide: the stored
/// entry carries the original key and db (envelope, or `tp_key`/`tp_db` metadata), and a reader
/// whose key does not match treats the entry as absent.
///
/// **Readable means**, per backend (characters counted as UTF-16 code units, the strictest
/// count the services might use):
/// - Cosmos id: valid UTF-8, 1...255 characters, none of `/ \ ? #`, no control characters
///   (C0, DEL, C1), no private-use or non-characters, no trailing space.
/// - Blob name: valid UTF-8, 1...1024 characters, no `\`, no control/private-use/non-characters,
///   `/`-separated segments that are neither empty nor `.` or `..` (URL normalisation would
///   rewrite them), and no trailing `.` (the service warns against it). The caller
///   percent-encodes the name in the URL path.
/// - File name (directory tier): 1...200 bytes of `[a-z0-9._:@=+,-]`, not starting with `.`.
///   Lower case only, so two keys never share a file on a case-insensitive file system; for the
///   same reason file names encode keys in base32 (lower case, no padding) instead of base64url:
///   `~tp~<db>~<base32(key)>` or `~tp~<db>~h~<sha256 hex>`, at most 255 bytes.
public enum TierNames {
    /// Every encoded name starts with this; no readable name does.
    public static let reservedPrefix = "~tp~"

    static let cosmosMaxLength = 255
    static let blobMaxLength = 1024
    static let fileMaxLength = 255
    static let fileReadableMaxLength = 200

    /// The Cosmos DB document id (and, by the seed's convention, partition key value) for `key`.
    public static func cosmosID(_ key: TierKey) -> String {
        if key.db == 0, let text = readableText(key.bytes, maxLength: cosmosMaxLength, cosmosCharacterAllowed),
           !text.hasSuffix(" ") {
            return text
        }
        return encoded(key, maxLength: cosmosMaxLength, base64url)
    }

    /// The blob name for `key` (not yet percent-encoded).
    public static func blobName(_ key: TierKey) -> String {
        if key.db == 0, let text = readableText(key.bytes, maxLength: blobMaxLength, blobCharacterAllowed),
           blobSegmentsValid(key.bytes) {
            return text
        }
        return encoded(key, maxLength: blobMaxLength, base64url)
    }

    /// The file name for `key` in the directory tier (one path component, at most 255 bytes).
    public static func fileName(_ key: TierKey) -> String {
        if key.db == 0, isReadableFileName(key.bytes) { return String(decoding: key.bytes, as: UTF8.self) }
        return encoded(key, maxLength: fileMaxLength, base32)
    }

    /// The database a directory-tier file name belongs to: 0 for a readable name, `<db>` for an
    /// encoded one; nil for names this scheme never makes (temp files, strays).
    public static func db(ofFileName name: String) -> Int? {
        let bytes = Array(name.utf8)
        guard bytes.starts(with: reservedPrefixBytes) else { return isReadableFileName(bytes) ? 0 : nil }
        let parts = bytes[reservedPrefixBytes.count...].split(separator: UInt8(ascii: "~"), maxSplits: 1,
                                                              omittingEmptySubsequences: false)
        // The body may be empty: that is the empty key.
        guard parts.count == 2 else { return nil }
        return decimal(parts[0])
    }

    /// True if the name is a SHA-256 name, whose entry must be checked against the wanted key.
    public static func isHashed(_ name: String) -> Bool {
        guard name.hasPrefix(reservedPrefix) else { return false }
        return name.utf8.dropFirst(reservedPrefixBytes.count).split(separator: UInt8(ascii: "~"))
            .dropFirst().first.map { Array($0) == [UInt8(ascii: "h")] } ?? false
    }

    /// The key a Cosmos id or blob name stands for, when the name says it (readable and base64
    /// names); nil for hash names (read the entry's metadata) and for names this scheme never makes.
    public static func key(fromCosmosIDOrBlobName name: String) -> TierKey? {
        let bytes = Array(name.utf8)
        guard bytes.starts(with: reservedPrefixBytes) else { return TierKey(db: 0, bytes) }
        let parts = bytes[reservedPrefixBytes.count...].split(separator: UInt8(ascii: "~"),
                                                              omittingEmptySubsequences: false)
        guard parts.count == 2, let db = decimal(parts[0]), let key = decodeBase64url(parts[1]) else { return nil }
        return TierKey(db: db, key)
    }

    // MARK: - Readability rules

    static let reservedPrefixBytes = Array(reservedPrefix.utf8)

    /// The key as text if it is valid UTF-8, within `maxLength` UTF-16 units, every scalar allowed,
    /// and not starting with the reserved prefix.
    private static func readableText(_ bytes: [UInt8], maxLength: Int, _ allowed: (Unicode.Scalar) -> Bool) -> String? {
        guard !bytes.isEmpty, bytes.count <= maxLength * 3, !bytes.starts(with: reservedPrefixBytes),
              let text = String(validating: bytes, as: UTF8.self) else { return nil }
        var units = 0
        for scalar in text.unicodeScalars {
            guard allowed(scalar) else { return nil }
            units += scalar.utf16.count
        }
        return units <= maxLength ? text : nil
    }

    /// Characters no service name should carry: controls, private use, non-characters.
    private static func generallyAllowed(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 0x20 || (0x7F...0x9F).contains(v) { return false }
        if (0xE000...0xF8FF).contains(v) || v >= 0xF0000 { return false }  // private use (BMP, planes 15-16)
        if (0xFDD0...0xFDEF).contains(v) || v & 0xFFFE == 0xFFFE { return false }  // non-characters
        return true
    }

    private static func cosmosCharacterAllowed(_ s: Unicode.Scalar) -> Bool {
        switch s {
        case "/", "\\", "?", "#": return false
        default: return generallyAllowed(s)
        }
    }

    private static func blobCharacterAllowed(_ s: Unicode.Scalar) -> Bool {
        s != "\\" && generallyAllowed(s)
    }

    private static func blobSegmentsValid(_ bytes: [UInt8]) -> Bool {
        if bytes.last == UInt8(ascii: ".") { return false }
        for segment in bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
            if segment.isEmpty || segment.elementsEqual([0x2E]) || segment.elementsEqual([0x2E, 0x2E]) { return false }
        }
        return true
    }

    private static func isReadableFileName(_ bytes: [UInt8]) -> Bool {
        !bytes.isEmpty && bytes.count <= fileReadableMaxLength && bytes[0] != UInt8(ascii: ".")
            && bytes.allSatisfy(fileByteAllowed) && !bytes.starts(with: reservedPrefixBytes)
    }

    private static func fileByteAllowed(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"): return true
        case UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"), UInt8(ascii: "@"),
             UInt8(ascii: "="), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: "-"): return true
        default: return false
        }
    }

    // MARK: - Encoded names

    private static func encoded(_ key: TierKey, maxLength: Int, _ encode: ([UInt8]) -> [UInt8]) -> String {
        var name = reservedPrefixBytes
        name += Array(String(key.db).utf8)
        name.append(UInt8(ascii: "~"))
        // Cheap length check before encoding: both encodings are at least 4/3 of the key.
        if name.count + (key.bytes.count * 4 + 2) / 3 <= maxLength {
            let body = encode(key.bytes)
            if name.count + body.count <= maxLength {
                return String(decoding: name + body, as: UTF8.self)
            }
        }
        name += Array("h~".utf8)
        name += hex(sha256(key.bytes))
        return String(decoding: name, as: UTF8.self)
    }

    static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        bytes.withUnsafeBufferPointer { input in
            digest.withUnsafeMutableBufferPointer { out in
                _ = SHA256(input.baseAddress, input.count, out.baseAddress)
            }
        }
        return digest
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    static func hex(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(hexDigits[Int(b >> 4)])
            out.append(hexDigits[Int(b & 15)])
        }
        return out
    }

    private static let base64urlAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    private static let base32Alphabet = Array("abcdefghijklmnopqrstuvwxyz234567".utf8)

    /// RFC 4648 §5 base64url without padding.
    static func base64url(_ bytes: [UInt8]) -> [UInt8] {
        packBits(bytes, bitsPerDigit: 6, base64urlAlphabet)
    }

    /// RFC 4648 §6 base32, lower-cased, without padding.
    static func base32(_ bytes: [UInt8]) -> [UInt8] {
        packBits(bytes, bitsPerDigit: 5, base32Alphabet)
    }

    private static func packBits(_ bytes: [UInt8], bitsPerDigit: Int, _ alphabet: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity((bytes.count * 8 + bitsPerDigit - 1) / bitsPerDigit)
        var acc: UInt32 = 0
        var bits = 0
        let mask = UInt32(1 << bitsPerDigit - 1)
        for b in bytes {
            acc = acc << 8 | UInt32(b)
            bits += 8
            while bits >= bitsPerDigit {
                bits -= bitsPerDigit
                out.append(alphabet[Int(acc >> UInt32(bits) & mask)])
            }
        }
        if bits > 0 { out.append(alphabet[Int(acc << UInt32(bitsPerDigit - bits) & mask)]) }
        return out
    }

    static func decodeBase64url<C: Collection>(_ text: C) -> [UInt8]? where C.Element == UInt8 {
        var out = [UInt8]()
        out.reserveCapacity(text.count * 3 / 4)
        var acc: UInt32 = 0
        var bits = 0
        for c in text {
            let v: UInt32
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = UInt32(c - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): v = UInt32(c - UInt8(ascii: "a")) + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt32(c - UInt8(ascii: "0")) + 52
            case UInt8(ascii: "-"): v = 62
            case UInt8(ascii: "_"): v = 63
            default: return nil
            }
            acc = (acc << 6 | v) & 0xFFFF
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
            }
        }
        // Leftover bits must be zero padding, or the text was not made by `base64url`.
        if bits >= 6 || acc & UInt32(1 << bits - 1) != 0 { return nil }
        return out
    }

    static func decimal<C: Collection>(_ digits: C) -> Int? where C.Element == UInt8 {
        guard !digits.isEmpty, digits.count <= 18 else { return nil }
        var n = 0
        for d in digits {
            guard d >= UInt8(ascii: "0"), d <= UInt8(ascii: "9") else { return nil }
            n = n * 10 + Int(d - UInt8(ascii: "0"))
        }
        return n
    }
}
