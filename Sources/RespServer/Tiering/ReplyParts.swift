import RESP

/// Reading the few replies the tiering logic must understand: the proxy's own EXISTS, GET,
/// PTTL and EXEC answers, and MGET arrays. Replies are whole RESP2/RESP3 messages as bytes.
enum ReplyParts {
    /// `-…` or `!…` (RESP3 blob error).
    static func isError(_ r: ArraySlice<UInt8>) -> Bool {
        r.first == UInt8(ascii: "-") || r.first == UInt8(ascii: "!")
    }
    static func isError(_ r: [UInt8]) -> Bool { isError(r[...]) }

    /// `$-1`, `*-1` or `_`.
    static func isNull(_ r: ArraySlice<UInt8>) -> Bool {
        guard let t = r.first else { return false }
        if t == UInt8(ascii: "_") { return true }
        return (t == UInt8(ascii: "$") || t == UInt8(ascii: "*")) && r.dropFirst().first == UInt8(ascii: "-")
    }
    static func isNull(_ r: [UInt8]) -> Bool { isNull(r[...]) }

    /// The integer of `:N` (RESP3 may also give it as-is); nil for anything else.
    static func integer(_ r: ArraySlice<UInt8>) -> Int? {
        guard r.first == UInt8(ascii: ":"), let end = lineEnd(r) else { return nil }
        return Int(String(decoding: r[(r.startIndex + 1)..<end], as: UTF8.self))
    }
    static func integer(_ r: [UInt8]) -> Int? { integer(r[...]) }

    /// A bulk string's bytes (`$N`, or RESP3 verbatim `=N` without its "txt:" prefix is not
    /// expected here); `.some(nil)` for a null; nil for any other reply.
    static func bulk(_ r: ArraySlice<UInt8>) -> [UInt8]?? {
        if isNull(r) { return .some(nil) }
        guard r.first == UInt8(ascii: "$"), let end = lineEnd(r),
              let n = Int(String(decoding: r[(r.startIndex + 1)..<end], as: UTF8.self)) else { return nil }
        let start = end + 2
        guard n >= 0, start + n <= r.endIndex else { return nil }
        return .some(Array(r[start..<(start + n)]))
    }

    /// The elements of an array reply (`*N`, or RESP3 set `~N`), each a whole reply, or of a
    /// RESP3 map (`%N`: its N keys and values in turn, 2N elements); nil for a null array or any
    /// other reply.
    static func elements(_ r: [UInt8]) -> [ArraySlice<UInt8>]? {
        guard let t = r.first, t == UInt8(ascii: "*") || t == UInt8(ascii: "~") || t == UInt8(ascii: "%"),
              let end = lineEnd(r[...]), let count = Int(String(decoding: r[1..<end], as: UTF8.self)),
              count >= 0 else { return nil }
        let n = t == UInt8(ascii: "%") ? 2 * count : count
        let bodyStart = end + 2
        if n == 0 { return [] }
        var scanner = ReplyScanner()
        var infos: [ReplyInfo] = []
        let status = r.withUnsafeBytes { raw in
            scanner.feed(UnsafeRawBufferPointer(rebasing: raw[bodyStart...]), replies: &infos)
        }
        guard status == .ok, infos.count >= n else { return nil }
        var out: [ArraySlice<UInt8>] = []
        out.reserveCapacity(n)
        var start = bodyStart
        for info in infos.prefix(n) {
            out.append(r[start..<(bodyStart + info.end)])
            start = bodyStart + info.end
        }
        return out
    }

    /// The index of the CR ending the first line, if the line is complete.
    private static func lineEnd(_ r: ArraySlice<UInt8>) -> Int? {
        var i = r.startIndex
        while i + 1 < r.endIndex {
            if r[i] == 0x0D && r[i + 1] == 0x0A { return i }
            i += 1
        }
        return nil
    }

    static func bulkReply(_ value: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(value.count + 16)
        RESPWriter.bulk(value, into: &out)
        return out
    }

    static func errorReply(_ message: String) -> [UInt8] {
        var out = [UInt8]()
        RESPWriter.error(message, into: &out)
        return out
    }

    static func command(_ args: [[UInt8]]) -> [UInt8] {
        var out = [UInt8]()
        RESPWriter.command(args, into: &out)
        return out
    }
}
