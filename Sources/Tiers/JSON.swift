/// A small JSON codec for Cosmos documents and token responses (no Foundation on the request path).
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    /// Numbers keep their text; read them with `int` or `double`.
    case number(String)
    case string(String)
    case array([JSONValue])
    /// Members in document order.
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.number(let x), .number(let y)): return x == y
        case (.string(let x), .string(let y)): return x == y
        case (.array(let x), .array(let y)): return x == y
        case (.object(let x), .object(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    public subscript(_ name: String) -> JSONValue? {
        if case .object(let members) = self { return members.first { $0.0 == name }?.1 }
        return nil
    }

    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var int: Int64? {
        switch self {
        case .number(let t): return Int64(t) ?? Double(t).flatMap { $0.isFinite ? Int64(exactly: $0.rounded()) : nil }
        case .string(let s): return Int64(s)
        default: return nil
        }
    }
    public var double: Double? { if case .number(let t) = self { return Double(t) }; return nil }
    public var isNull: Bool { self == .null }

    /// Parses one JSON text; nil (with no crash) for anything malformed or nested deeper than 64.
    public static func parse(_ bytes: [UInt8]) -> JSONValue? {
        bytes.withUnsafeBufferPointer { buf in
            var p = JSONParser(buf)
            guard let v = p.value(depth: 0) else { return nil }
            p.skipSpace()
            return p.i == buf.count ? v : nil
        }
    }

    /// Serializes; with `asciiOnly`, non-ASCII characters become \u escapes (for HTTP headers).
    public func serialized(asciiOnly: Bool = false) -> [UInt8] {
        var out = [UInt8]()
        JSONWriter.write(self, to: &out, asciiOnly: asciiOnly)
        return out
    }
}

struct JSONParser {
    let b: UnsafeBufferPointer<UInt8>
    var i = 0
    init(_ b: UnsafeBufferPointer<UInt8>) { self.b = b }

    mutating func skipSpace() {
        while i < b.count, b[i] == 32 || b[i] == 10 || b[i] == 13 || b[i] == 9 { i += 1 }
    }

    mutating func value(depth: Int) -> JSONValue? {
        guard depth < 64 else { return nil }
        skipSpace()
        guard i < b.count else { return nil }
        switch b[i] {
        case UInt8(ascii: "{"):
            i += 1
            var members = [(String, JSONValue)]()
            skipSpace()
            if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
            while true {
                skipSpace()
                guard let k = string() else { return nil }
                skipSpace()
                guard i < b.count, b[i] == UInt8(ascii: ":") else { return nil }
                i += 1
                guard let v = value(depth: depth + 1) else { return nil }
                members.append((k, v))
                skipSpace()
                guard i < b.count else { return nil }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                if b[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                return nil
            }
        case UInt8(ascii: "["):
            i += 1
            var items = [JSONValue]()
            skipSpace()
            if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
            while true {
                guard let v = value(depth: depth + 1) else { return nil }
                items.append(v)
                skipSpace()
                guard i < b.count else { return nil }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                if b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                return nil
            }
        case UInt8(ascii: "\""):
            return string().map { .string($0) }
        case UInt8(ascii: "t"): return literal("true", .bool(true))
        case UInt8(ascii: "f"): return literal("false", .bool(false))
        case UInt8(ascii: "n"): return literal("null", .null)
        default:
            let start = i
            while i < b.count {
                let c = b[i]
                if (c >= 48 && c <= 57) || c == UInt8(ascii: "-") || c == UInt8(ascii: "+") || c == UInt8(ascii: ".")
                    || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") { i += 1 } else { break }
            }
            guard i > start else { return nil }
            let text = String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
            return Double(text) == nil ? nil : .number(text)
        }
    }

    mutating func literal(_ word: StaticString, _ v: JSONValue) -> JSONValue? {
        let n = word.utf8CodeUnitCount
        guard i + n <= b.count else { return nil }
        for k in 0..<n where b[i + k] != word.utf8Start[k] { return nil }
        i += n
        return v
    }

    /// A string token; the fast path copies the bytes between the quotes when there is no escape.
    mutating func string() -> String? {
        guard i < b.count, b[i] == UInt8(ascii: "\"") else { return nil }
        i += 1
        let start = i
        while i < b.count, b[i] != UInt8(ascii: "\""), b[i] != UInt8(ascii: "\\") { i += 1 }
        guard i < b.count else { return nil }
        if b[i] == UInt8(ascii: "\"") {
            let s = String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
            i += 1
            return s
        }
        var out = Array(b[start..<i])
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "\"") { i += 1; return String(decoding: out, as: UTF8.self) }
            if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
            i += 1
            guard i < b.count else { return nil }
            let e = b[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
            case UInt8(ascii: "b"): out.append(8)
            case UInt8(ascii: "f"): out.append(12)
            case UInt8(ascii: "n"): out.append(10)
            case UInt8(ascii: "r"): out.append(13)
            case UInt8(ascii: "t"): out.append(9)
            case UInt8(ascii: "u"):
                guard var scalar = hex4() else { return nil }
                if (0xD800...0xDBFF).contains(scalar), i + 1 < b.count, b[i] == UInt8(ascii: "\\"),
                   b[i + 1] == UInt8(ascii: "u") {
                    let save = i
                    i += 2
                    if let low = hex4(), (0xDC00...0xDFFF).contains(low) {
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else { i = save }
                }
                let u = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                out.append(contentsOf: Array(String(Character(u)).utf8))
            default: return nil
            }
        }
        return nil
    }

    mutating func hex4() -> UInt32? {
        guard i + 4 <= b.count else { return nil }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = b[i]
            let d: UInt32
            switch c {
            case 48...57: d = UInt32(c - 48)
            case 65...70: d = UInt32(c - 55)
            case 97...102: d = UInt32(c - 87)
            default: return nil
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }
}

enum JSONWriter {
    private static let hex = Array("0123456789abcdef".utf8)

    static func write(_ v: JSONValue, to out: inout [UInt8], asciiOnly: Bool) {
        switch v {
        case .null: out += Array("null".utf8)
        case .bool(let x): out += Array((x ? "true" : "false").utf8)
        case .number(let t): out += Array(t.utf8)
        case .string(let s): writeString(s, to: &out, asciiOnly: asciiOnly)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (k, item) in items.enumerated() {
                if k > 0 { out.append(UInt8(ascii: ",")) }
                write(item, to: &out, asciiOnly: asciiOnly)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (k, m) in members.enumerated() {
                if k > 0 { out.append(UInt8(ascii: ",")) }
                writeString(m.0, to: &out, asciiOnly: asciiOnly)
                out.append(UInt8(ascii: ":"))
                write(m.1, to: &out, asciiOnly: asciiOnly)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func writeString(_ s: String, to out: inout [UInt8], asciiOnly: Bool) {
        out.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { utf8 in
            out.reserveCapacity(out.count + utf8.count + 2)
            var runStart = 0
            func flush(_ upTo: Int) {
                if upTo > runStart { out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<upTo])) }
            }
            var k = 0
            while k < utf8.count {
                let c = utf8[k]
                if c >= 0x20 && c != UInt8(ascii: "\"") && c != UInt8(ascii: "\\") && (c < 0x80 || !asciiOnly) {
                    k += 1; continue
                }
                flush(k)
                if c >= 0x80 {
                    // asciiOnly: re-decode this scalar and write it as \u escapes (UTF-16).
                    var len = 1
                    while k + len < utf8.count, utf8[k + len] & 0xC0 == 0x80 { len += 1 }
                    let scalarText = String(decoding: UnsafeBufferPointer(rebasing: utf8[k..<k + len]), as: UTF8.self)
                    for unit in scalarText.utf16 { escapeUnit(unit, &out) }
                    k += len
                } else {
                    switch c {
                    case UInt8(ascii: "\""): out += [92, 34]
                    case UInt8(ascii: "\\"): out += [92, 92]
                    case 10: out += [92, UInt8(ascii: "n")]
                    case 13: out += [92, UInt8(ascii: "r")]
                    case 9: out += [92, UInt8(ascii: "t")]
                    default: escapeUnit(UInt16(c), &out)
                    }
                    k += 1
                }
                runStart = k
            }
            flush(utf8.count)
        }
        out.append(UInt8(ascii: "\""))
    }

    private static func escapeUnit(_ u: UInt16, _ out: inout [UInt8]) {
        out += [92, UInt8(ascii: "u"), hex[Int(u >> 12 & 15)], hex[Int(u >> 8 & 15)], hex[Int(u >> 4 & 15)], hex[Int(u & 15)]]
    }
}
