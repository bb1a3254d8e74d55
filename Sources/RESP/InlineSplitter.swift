/// Redis's `sdssplitargs` (src/sds.c, 7.0): splits an inline request line into arguments,
/// applying double quotes (with `\n \r \t \b \a \xHH` escapes), single quotes (with `\'`),
/// and whitespace separators. The end of `line` plays the part of the C string's NUL.
enum InlineSplitter {
    /// The arguments, or nil for unbalanced quotes (or a closing quote not followed by a space).
    static func split(_ line: UnsafeRawBufferPointer) -> [[UInt8]]? {
        // The C string ends at its first NUL (the request parser never passes one).
        var n = line.count
        if let nul = line.firstIndex(of: 0) { n = nul }
        // Reads past the end give 0, exactly like the C code reading the terminator.
        @inline(__always) func at(_ i: Int) -> UInt8 { i < n ? line[i] : 0 }
        // A closing quote must be followed by a space or by the end of the line.
        @inline(__always) func closesCleanly(_ quote: Int) -> Bool { at(quote + 1) == 0 || isCSpace(at(quote + 1)) }

        var args: [[UInt8]] = []
        var p = 0
        while true {
            while p < n && isCSpace(line[p]) { p += 1 }
            if p >= n { return args }
            var current: [UInt8] = []
            var inDouble = false, inSingle = false, done = false
            while !done {
                let c = at(p)
                if inDouble {
                    if c == UInt8(ascii: "\\") && at(p + 1) == UInt8(ascii: "x"),
                       let hi = hexValue(at(p + 2)), let lo = hexValue(at(p + 3)) {
                        current.append(hi << 4 | lo)
                        p += 3
                    } else if c == UInt8(ascii: "\\") && at(p + 1) != 0 {
                        p += 1
                        switch at(p) {
                        case UInt8(ascii: "n"): current.append(0x0A)
                        case UInt8(ascii: "r"): current.append(0x0D)
                        case UInt8(ascii: "t"): current.append(0x09)
                        case UInt8(ascii: "b"): current.append(0x08)
                        case UInt8(ascii: "a"): current.append(0x07)
                        case let other: current.append(other)
                        }
                    } else if c == UInt8(ascii: "\"") {
                        guard closesCleanly(p) else { return nil }
                        done = true
                    } else if c == 0 {
                        return nil
                    } else {
                        current.append(c)
                    }
                } else if inSingle {
                    if c == UInt8(ascii: "\\") && at(p + 1) == UInt8(ascii: "'") {
                        p += 1
                        current.append(UInt8(ascii: "'"))
                    } else if c == UInt8(ascii: "'") {
                        guard closesCleanly(p) else { return nil }
                        done = true
                    } else if c == 0 {
                        return nil
                    } else {
                        current.append(c)
                    }
                } else {
                    switch c {
                    case 0x20, 0x0A, 0x0D, 0x09, 0: done = true
                    case UInt8(ascii: "\""): inDouble = true
                    case UInt8(ascii: "'"): inSingle = true
                    default: current.append(c)
                    }
                }
                if p < n { p += 1 }
            }
            args.append(current)
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
