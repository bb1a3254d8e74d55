/// Redis's `sdssplitargs` (src/sds.c, 7.0): splits an inline request line into arguments,
/// applying double quotes (with `\n \r \t \b \a \xHH` escapes), single quotes (with `\'`),
/// and whitespace separators. The end of `line` plays the part of the C string's NUL.
enum InlineSplitter {
    /// The arguments, or nil for unbalanced quotes (or a closing quote not followed by a space).
    static func split(_ line: UnsafeRawBufferPointer) -> [[UInt8]]? {
        let text = CLine(line)
        var args: [[UInt8]] = []
        var p = 0
        while true {
            while p < text.count && isCSpace(text[p]) { p += 1 }
            if p >= text.count { return args }
            guard let arg = argument(text, from: &p) else { return nil }
            args.append(arg)
        }
    }

    /// The line as the C code sees it: it ends at its first NUL (the request parser never passes
    /// one), and reads past the end give 0, exactly like reading the terminator.
    struct CLine {
        let bytes: UnsafeRawBufferPointer
        let count: Int

        init(_ bytes: UnsafeRawBufferPointer) {
            self.bytes = bytes
            count = bytes.firstIndex(of: 0) ?? bytes.count
        }

        @inline(__always) subscript(_ i: Int) -> UInt8 { i < count ? bytes[i] : 0 }

        /// A closing quote must be followed by a space or by the end of the line.
        @inline(__always) func closesCleanly(_ quote: Int) -> Bool { self[quote + 1] == 0 || isCSpace(self[quote + 1]) }
    }

    /// One argument starting at `p` (not a space), `p` left after it: `sdssplitargs`'s inner
    /// loop, one state machine over the three ways a byte is read (plain, in "…", in '…'), kept
    /// whole: its tests come in Redis's order, which decides the corner cases. nil: unbalanced quotes.
    private static func argument(_ text: CLine, from p: inout Int) -> [UInt8]? {
        let backslash = UInt8(ascii: "\\"), double = UInt8(ascii: "\""), single = UInt8(ascii: "'")
        var current: [UInt8] = []
        var quote: UInt8?      // the quote the argument is inside, if any
        var done = false
        while !done {
            let c = text[p]
            if let quote {
                if quote == double && c == backslash && text[p + 1] == UInt8(ascii: "x"),
                   let hi = hexValue(text[p + 2]), let lo = hexValue(text[p + 3]) {
                    current.append(hi << 4 | lo)
                    p += 3
                } else if quote == double && c == backslash && text[p + 1] != 0 {
                    p += 1
                    current.append(unescaped(text[p]))
                } else if quote == single && c == backslash && text[p + 1] == single {
                    p += 1
                    current.append(single)
                } else if c == quote {
                    guard text.closesCleanly(p) else { return nil }
                    done = true
                } else if c == 0 {
                    return nil
                } else {
                    current.append(c)
                }
            } else {
                switch c {
                case 0x20, 0x0A, 0x0D, 0x09, 0: done = true
                case double, single: quote = c
                default: current.append(c)
                }
            }
            if p < text.count { p += 1 }
        }
        return current
    }

    /// The byte a backslash escape inside double quotes stands for (`\n \r \t \b \a`; any other
    /// byte stands for itself).
    @inline(__always) static func unescaped(_ c: UInt8) -> UInt8 {
        switch c {
        case UInt8(ascii: "n"): return 0x0A
        case UInt8(ascii: "r"): return 0x0D
        case UInt8(ascii: "t"): return 0x09
        case UInt8(ascii: "b"): return 0x08
        case UInt8(ascii: "a"): return 0x07
        default: return c
        }
    }

    /// C `isspace` in the C locale.
    @inline(__always) static func isCSpace(_ c: UInt8) -> Bool {
        c == 0x20 || (c >= 0x09 && c <= 0x0D)
    }

    @inline(__always) static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x61...0x66: return c - 0x61 + 10
        case 0x41...0x46: return c - 0x41 + 10
        default: return nil
        }
    }
}
