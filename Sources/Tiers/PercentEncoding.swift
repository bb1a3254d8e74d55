/// Percent-encoding with an explicit set of bytes left as they are.
enum PercentEncoding {
    /// RFC 3986 unreserved: letters, digits, `-._~`.
    static let unreserved: Set<UInt8> = {
        var s = Set<UInt8>()
        for c in UInt8(ascii: "A")...UInt8(ascii: "Z") { s.insert(c) }
        for c in UInt8(ascii: "a")...UInt8(ascii: "z") { s.insert(c) }
        for c in UInt8(ascii: "0")...UInt8(ascii: "9") { s.insert(c) }
        for c in "-._~".utf8 { s.insert(c) }
        return s
    }()
    /// What the Cosmos SDK leaves in an authorization value (`urllib.quote(v, "-_.!~*'()")`).
    static let cosmosAuthSafe: Set<UInt8> = unreserved.union("!*'()".utf8)
    /// Path segments: unreserved plus `/` (the Python SDKs' `quote(name, safe='/~')`).
    static let pathSafe: Set<UInt8> = unreserved.union("/".utf8)
    /// A query value or form field: unreserved only.
    static let queryValueSafe = unreserved

    static func encode<C: Collection>(_ bytes: C, keeping safe: Set<UInt8>) -> String where C.Element == UInt8 {
        let hex: [UInt8] = Array("0123456789ABCDEF".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count)
        for b in bytes {
            if safe.contains(b) { out.append(b) } else {
                out.append(UInt8(ascii: "%")); out.append(hex[Int(b >> 4)]); out.append(hex[Int(b & 15)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func encode(_ text: String, keeping safe: Set<UInt8>) -> String { encode(Array(text.utf8), keeping: safe) }

    /// Decodes `%XX` (and `+` as space when `plusIsSpace`); invalid escapes are kept as they are.
    static func decode(_ text: String, plusIsSpace: Bool = false) -> String {
        var out = [UInt8]()
        let b = Array(text.utf8)
        var i = 0
        func hexv(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: return c - 48
            case 65...70: return c - 55
            case 97...102: return c - 87
            default: return nil
            }
        }
        while i < b.count {
            if b[i] == UInt8(ascii: "%"), i + 2 < b.count, let h = hexv(b[i + 1]), let l = hexv(b[i + 2]) {
                out.append(h << 4 | l); i += 3
            } else if plusIsSpace && b[i] == UInt8(ascii: "+") {
                out.append(32); i += 1
            } else { out.append(b[i]); i += 1 }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Decodes %XX escapes (bytes, then UTF-8; invalid sequences become U+FFFD). A lone or malformed
/// "%" stays as it is, as URL parsers are lenient about it in user-typed settings.
public func percentDecoded<S: StringProtocol>(_ s: S) -> String {
    var out = [UInt8]()
    var bytes = Array(s.utf8)[...]
    while let b = bytes.popFirst() {
        if b == UInt8(ascii: "%"), bytes.count >= 2,
           let v = UInt8(String(decoding: bytes.prefix(2), as: UTF8.self), radix: 16) {
            out.append(v)
            bytes = bytes.dropFirst(2)
        } else {
            out.append(b)
        }
    }
    return String(decoding: out, as: UTF8.self)
}
