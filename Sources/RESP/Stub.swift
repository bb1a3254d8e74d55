// TEMPORARY stand-in for the RESP module (copying, slow); replaced by the real parser/scanner.
public struct ArgSpan { public var offset: Int; public var count: Int }
public struct CommandName: Hashable {
    var bytes: [UInt8]
    public init(_ s: StaticString) { bytes = Array(UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount)) }
    public init(_ s: String) { bytes = Array(s.lowercased().utf8) }
    init(raw: ArraySlice<UInt8>) { bytes = raw.map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 } }
}
public struct RequestFrame {
    public var length: Int; public var argc: Int; public var name: CommandName; public var spanStart: Int
    public var inlineArgs: [[UInt8]]?; public var isEmpty: Bool
}
public enum ParseStatus: Equatable { case ok; case protocolError(String) }
public struct RequestParser {
    var pending: [UInt8] = []
    let max: Int
    public init(maxBulkLength: Int = 512 << 20) { max = maxBulkLength }
    public var partialBytes: Int { pending.count }
    public var bytesWanted: Int { 0 }
    public mutating func reset() { pending = [] }
    public mutating func feed(_ segment: UnsafeRawBufferPointer, frames: inout [RequestFrame], spans: inout [ArgSpan]) -> ParseStatus {
        pending.append(contentsOf: segment)
        var pos = 0
        let b = pending
        func line(_ from: Int) -> Int? { var i = from; while i + 1 < b.count { if b[i] == 13 && b[i+1] == 10 { return i }; i += 1 }; return nil }
        while pos < b.count {
            if b[pos] != UInt8(ascii: "*") {
                var i = pos; while i < b.count && b[i] != 10 { i += 1 }
                if i == b.count { break }
                var end = i; if end > pos && b[end-1] == 13 { end -= 1 }
                let args = b[pos..<end].split(separator: 32).map { Array($0) }
                frames.append(RequestFrame(length: i + 1 - pos, argc: args.count, name: CommandName(raw: args.first?[...] ?? []),
                                           spanStart: 0, inlineArgs: args, isEmpty: args.isEmpty))
                pos = i + 1; continue
            }
            guard let e = line(pos) else { break }
            guard let n = Int(String(decoding: b[(pos+1)..<e], as: UTF8.self)) else { return .protocolError("Protocol error: invalid multibulk length") }
            var p = e + 2
            if n <= 0 { frames.append(RequestFrame(length: p - pos, argc: 0, name: CommandName(""), spanStart: 0, inlineArgs: nil, isEmpty: true)); pos = p; continue }
            var local: [ArgSpan] = []; var ok = true
            for _ in 0..<n {
                guard p < b.count else { ok = false; break }
                guard b[p] == UInt8(ascii: "$") else { return .protocolError("Protocol error: expected '$', got '\(Character(Unicode.Scalar(b[p])))'") }
                guard let le = line(p) else { ok = false; break }
                guard let len = Int(String(decoding: b[(p+1)..<le], as: UTF8.self)), len >= 0, len <= max else { return .protocolError("Protocol error: invalid bulk length") }
                let start = le + 2
                guard start + len + 2 <= b.count else { ok = false; break }
                local.append(ArgSpan(offset: start - pos, count: len)); p = start + len + 2
            }
            if !ok { break }
            let first = local[0]
            frames.append(RequestFrame(length: p - pos, argc: n, name: CommandName(raw: b[(pos+first.offset)..<(pos+first.offset+first.count)]),
                                       spanStart: spans.count, inlineArgs: nil, isEmpty: false))
            spans.append(contentsOf: local); pos = p
        }
        pending.removeFirst(pos)
        return .ok
    }
}
public struct ReplyInfo { public var end: Int; public var type: UInt8; public var isNull: Bool; public var isPush: Bool; public var isError: Bool }
public struct ReplyScanner {
    var pending: [UInt8] = []
    public init() {}
    public mutating func feed(_ segment: UnsafeRawBufferPointer, replies: inout [ReplyInfo]) -> ParseStatus {
        let oldCount = pending.count
        pending.append(contentsOf: segment)
        var pos = 0
        while let end = ReplyScanner.scan(pending, pos) {
            replies.append(ReplyInfo(end: end - oldCount, type: pending[pos], isNull: false, isPush: pending[pos] == UInt8(ascii: ">"), isError: pending[pos] == UInt8(ascii: "-")))
            pos = end
        }
        pending.removeFirst(pos)
        return .ok
    }
    static func scan(_ b: [UInt8], _ pos: Int) -> Int? {
        guard pos < b.count else { return nil }
        var i = pos + 1; while i + 1 < b.count && !(b[i] == 13 && b[i+1] == 10) { i += 1 }
        guard i + 1 < b.count else { return nil }
        let n = Int(String(decoding: b[(pos+1)..<i], as: UTF8.self)) ?? 0
        var p = i + 2
        switch b[pos] {
        case UInt8(ascii: "$"), UInt8(ascii: "="), UInt8(ascii: "!"):
            if n < 0 { return p }; return p + n + 2 <= b.count ? p + n + 2 : nil
        case UInt8(ascii: "*"), UInt8(ascii: ">"), UInt8(ascii: "~"), UInt8(ascii: "%"), UInt8(ascii: "|"):
            let count = b[pos] == UInt8(ascii: "%") || b[pos] == UInt8(ascii: "|") ? n * 2 : n
            if count < 0 { return p }
            for _ in 0..<count { guard let e = scan(b, p) else { return nil }; p = e }
            if b[pos] == UInt8(ascii: "|") { return scan(b, p) }
            return p
        default: return p
        }
    }
}
