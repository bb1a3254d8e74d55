/// Standard base64 (RFC 4648, with padding), without Foundation: used for keys, signatures,
/// block ids and binary values in JSON documents.
public enum Base64 {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let reverse: [UInt8] = {
        var t = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in alphabet.enumerated() { t[Int(c)] = UInt8(i) }
        // URL-safe alphabet decodes too (JWTs, some SAS tooling).
        t[Int(UInt8(ascii: "-"))] = 62
        t[Int(UInt8(ascii: "_"))] = 63
        return t
    }()

    public static func encode<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        String(decoding: encodeBytes(bytes), as: UTF8.self)
    }

    public static func encodeBytes<C: Collection>(_ bytes: C) -> [UInt8] where C.Element == UInt8 {
        var out = [UInt8]()
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var it = bytes.makeIterator()
        while let a = it.next() {
            let b = it.next(), c = it.next()
            let n = UInt32(a) << 16 | UInt32(b ?? 0) << 8 | UInt32(c ?? 0)
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(b == nil ? UInt8(ascii: "=") : alphabet[Int(n >> 6 & 63)])
            out.append(c == nil ? UInt8(ascii: "=") : alphabet[Int(n & 63)])
        }
        return out
    }

    /// Decodes base64 (padding optional, whitespace ignored); nil if any other character appears.
    public static func decode(_ text: String) -> [UInt8]? { decode(bytes: Array(text.utf8)) }

    public static func decode<C: Collection>(bytes: C) -> [UInt8]? where C.Element == UInt8 {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count / 4 * 3)
        var acc: UInt32 = 0
        var bits = 0
        var padding = false
        for c in bytes {
            if c == UInt8(ascii: "=") { padding = true; continue }
            if c == 32 || c == 10 || c == 13 || c == 9 { continue }
            if padding { return nil }
            let v = reverse[Int(c)]
            if v == 0xFF { return nil }
            acc = acc << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
            }
        }
        return bits >= 6 ? nil : out
    }
}
