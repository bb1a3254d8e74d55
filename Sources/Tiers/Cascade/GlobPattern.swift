/// A Redis glob pattern (`KEYS`, `SCAN MATCH`, ACL key patterns): `*`, `?`, `[abc]`, `[^a]`, `[a-z]`,
/// `\` escapes. Binary-safe: patterns and keys are bytes, compared byte by byte (no case folding).
///
/// A port of `stringmatchlen_impl` in Redis's src/util.c (7.x, with the `skipLongerMatches` and
/// nesting guards), including its corner cases, so that a rule's pattern selects exactly the keys
/// `KEYS pattern` would: an unclosed `[` matches like a set that ends at the pattern's end, a
/// trailing `\` matches a literal `\`, a reversed range `[z-a]` means `[a-z]`, and a pattern with
/// more than 1000 nested `*` matches nothing. Redis reads one byte past the pattern's end (its sds
/// terminator) in two places; `byte(_:at:)` answers 0 there, as the terminator would.
public struct GlobPattern: Equatable, Hashable, Sendable {
    public let bytes: [UInt8]

    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public init(_ text: String) { self.bytes = Array(text.utf8) }

    /// True if `key` matches, as `KEYS pattern` decides: `stringmatchlen(pattern, key, nocase=0)`,
    /// except that the pattern `*` matches every key, the empty key included (KEYS and SCAN take
    /// that shortcut before calling the matcher, which alone would refuse the empty key).
    public func matches(_ key: [UInt8]) -> Bool {
        if bytes.count == 1 && bytes[0] == Self.star { return true }
        return bytes.withUnsafeBufferPointer { p in
            key.withUnsafeBufferPointer { s in
                var skipLongerMatches = false
                return GlobPattern.match(p, 0, s, 0, &skipLongerMatches, nesting: 0)
            }
        }
    }

    /// The pattern's byte at `i`, or 0 past its end, as Redis's sds terminator reads.
    @inline(__always) private static func byte(_ p: UnsafeBufferPointer<UInt8>, at i: Int) -> UInt8 {
        i < p.count ? p[i] : 0
    }

    private static let star = UInt8(ascii: "*"), question = UInt8(ascii: "?"), open = UInt8(ascii: "["),
                       close = UInt8(ascii: "]"), caret = UInt8(ascii: "^"), dash = UInt8(ascii: "-"),
                       backslash = UInt8(ascii: "\\")

    /// `stringmatchlen_impl` with indices for pointers: `pi`/`si` are where the pattern and the key
    /// continue; the lengths left are `p.count - pi` and `s.count - si`.
    private static func match(_ p: UnsafeBufferPointer<UInt8>, _ pi: Int, _ s: UnsafeBufferPointer<UInt8>, _ si: Int,
                              _ skipLongerMatches: inout Bool, nesting: Int) -> Bool {
        if nesting > 1000 { return false }  // Redis's guard against abusive patterns
        var pi = pi, si = si
        while pi < p.count && si < s.count {
            switch p[pi] {
            case star:
                while pi < p.count && byte(p, at: pi + 1) == star { pi += 1 }
                if p.count - pi == 1 { return true }
                while si < s.count {
                    if match(p, pi + 1, s, si, &skipLongerMatches, nesting: nesting + 1) { return true }
                    if skipLongerMatches { return false }
                    si += 1
                }
                // Nothing after this star matches anywhere in the rest of the key, so no earlier
                // star can do better by swallowing more: stop trying (Redis's CVE-2022-36021 fix).
                skipLongerMatches = true
                return false
            case question:
                si += 1
            case open:
                pi += 1
                if !setMatches(p, &pi, s[si]) { return false }
                si += 1
            case backslash:
                if p.count - pi >= 2 { pi += 1 }
                if p[pi] != s[si] { return false }
                si += 1
            default:
                if p[pi] != s[si] { return false }
                si += 1
            }
            pi += 1
            if si == s.count {
                while byte(p, at: pi) == star { pi += 1 }
                break
            }
        }
        return pi >= p.count && si == s.count
    }

    /// Whether `c` is in the set `[…]` whose body starts at `pi` (just after `[`); `pi` is left
    /// on the closing `]`, or on the pattern's last byte when the set is not closed, where
    /// `match` steps past it as past any other pattern byte.
    private static func setMatches(_ p: UnsafeBufferPointer<UInt8>, _ pi: inout Int, _ c: UInt8) -> Bool {
        let negate = byte(p, at: pi) == caret
        if negate { pi += 1 }
        var matched = false
        while true {
            let left = p.count - pi
            if byte(p, at: pi) == backslash && left >= 2 {
                pi += 1
                if p[pi] == c { matched = true }
            } else if byte(p, at: pi) == close {
                break
            } else if left == 0 {
                pi -= 1  // an unclosed set ends with the pattern
                break
            } else if left >= 3 && p[pi + 1] == dash {
                // Redis compares range ends as C `char`s: signed on x86-64, so there
                // `[\xff-c]` means -1...99 and holds `\` but not `z`. CChar has the same
                // signedness as the platform's C char.
                var start = CChar(bitPattern: p[pi]), end = CChar(bitPattern: p[pi + 2])
                let ch = CChar(bitPattern: c)
                if start > end { swap(&start, &end) }
                pi += 2
                if ch >= start && ch <= end { matched = true }
            } else if p[pi] == c {
                matched = true
            }
            pi += 1
        }
        return matched != negate
    }
}
