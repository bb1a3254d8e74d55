/// Appends RESP2 messages to a byte array (replies the proxy makes itself, and commands it
/// sends upstream).
public enum RESPWriter {
    static let crlf: (UInt8, UInt8) = (0x0D, 0x0A)

    /// `+<text>\r\n`; `text` must not contain CR or LF.
    public static func simpleString(_ text: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "+"))
        out.append(contentsOf: text.utf8)
        appendCRLF(&out)
    }

    /// `-<message>\r\n`, e.g. `error("ERR unknown command", into: &out)`. CR and LF in the
    /// message become spaces, as Redis's addReplyError does, so the reply stays one line.
    public static func error(_ message: String, into out: inout [UInt8]) {
        error(bytes: Array(message.utf8), into: &out)
    }

    public static func error<C: Collection>(bytes message: C, into out: inout [UInt8]) where C.Element == UInt8 {
        out.append(UInt8(ascii: "-"))
        for b in message { out.append(b == 0x0D || b == 0x0A ? 0x20 : b) }
        appendCRLF(&out)
    }

    /// `:<value>\r\n`
    public static func integer(_ value: Int, into out: inout [UInt8]) {
        out.append(UInt8(ascii: ":"))
        appendDecimal(value, &out)
        appendCRLF(&out)
    }

    /// `$<count>\r\n<bytes>\r\n` (an `UnsafeRawBufferPointer` works too, without a copy first).
    public static func bulk<C: Collection>(_ bytes: C, into out: inout [UInt8]) where C.Element == UInt8 {
        out.append(UInt8(ascii: "$"))
        appendDecimal(bytes.count, &out)
        appendCRLF(&out)
        out.append(contentsOf: bytes)
        appendCRLF(&out)
    }

    public static func bulk(_ text: String, into out: inout [UInt8]) {
        bulk(Array(text.utf8), into: &out)
    }

    /// `$-1\r\n`, the RESP2 nil.
    public static func nullBulk(into out: inout [UInt8]) {
        out.append(contentsOf: [UInt8(ascii: "$"), UInt8(ascii: "-"), UInt8(ascii: "1"), 0x0D, 0x0A])
    }

    /// `*-1\r\n`, the RESP2 nil array.
    public static func nullArray(into out: inout [UInt8]) {
        out.append(contentsOf: [UInt8(ascii: "*"), UInt8(ascii: "-"), UInt8(ascii: "1"), 0x0D, 0x0A])
    }

    /// `*<count>\r\n`; the elements follow.
    public static func arrayHeader(_ count: Int, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "*"))
        appendDecimal(count, &out)
        appendCRLF(&out)
    }

    /// A command as Redis expects it: an array of bulk strings.
    public static func command(_ args: [[UInt8]], into out: inout [UInt8]) {
        arrayHeader(args.count, into: &out)
        for arg in args { bulk(arg, into: &out) }
    }

    public static func command(_ args: [String], into out: inout [UInt8]) {
        arrayHeader(args.count, into: &out)
        for arg in args { bulk(arg, into: &out) }
    }

    @inline(__always) static func appendCRLF(_ out: inout [UInt8]) {
        out.append(0x0D)
        out.append(0x0A)
    }

    static func appendDecimal(_ value: Int, _ out: inout [UInt8]) {
        if value < 0 { out.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        // 20 digits hold any UInt64; fill from the right.
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buf in
            repeat {
                buf[23 - count] = UInt8(truncatingIfNeeded: magnitude % 10) + 0x30
                magnitude /= 10
                count += 1
            } while magnitude > 0
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: buf[(24 - count)...]))
        }
    }
}
