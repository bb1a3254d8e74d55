/// Where one complete top-level reply ends, and the little the proxy needs to know about it.
public struct ReplyInfo: Equatable, Sendable {
    /// Offset, in the segment just fed, one past the reply's last byte.
    public var end: Int
    /// Type byte of the reply (`+ - : $ * _ , # ! = ( % ~ >`), after any leading attribute.
    public var type: UInt8
    /// `$-1`, `*-1` (or any other aggregate of -1) and `_`.
    public var isNull: Bool
    /// A top-level RESP3 push (`>`): not the answer to a request.
    public var isPush: Bool
    /// `-` or `!`.
    public var isError: Bool

    public init(end: Int, type: UInt8, isNull: Bool = false, isPush: Bool = false, isError: Bool = false) {
        self.end = end
        self.type = type
        self.isNull = isNull
        self.isPush = isPush
        self.isError = isError
    }
}

/// Finds the ends of RESP2 and RESP3 replies in a byte stream, one contiguous segment at a
/// time, without copying or looking into any payload. Memory is constant whatever the nesting:
/// the scanner only counts the elements still owed to the current top-level reply.
///
/// Choices: RESP3 streamed strings and aggregates (`$?`, `*?`, `;`, `.`) are refused (Redis
/// never sends them); the CRLF after a payload is checked; `:` must be a 64-bit integer's
/// digits, `#` is `t` or `f`, `_` is empty, lengths are Redis-canonical; `,` and verbatim
/// contents are not examined. An aggregate of -1 is a null, an attribute of -1 an error.
public struct ReplyScanner {
    enum Phase: UInt8 {
        case type       // a type byte
        case line       // the rest of a line, up to CRLF
        case blob       // skipping a bulk, verbatim or blob-error payload
        case blobCR     // the CR after a payload
        case blobLF
        case failed
    }

    enum LineKind: UInt8 {
        case text       // + - ,   anything but CRLF
        case integer    // : (     optional sign, digits
        case length     // $ ! = * % ~ > |
        case null       // _       empty
        case boolean    // #       t or f
    }

    var phase = Phase.type
    var lineKind = LineKind.text
    var lineType: UInt8 = 0
    var lineCount = 0
    var digits = 0
    var inReply = false
    var sawCR = false
    var number = RedisInteger()
    var booleanSeen = false
    /// Elements still owed to the current top-level reply, itself included.
    var pending = 1
    var topKnown = false
    var currentIsTop = false
    var top = ReplyInfo(end: 0, type: 0)
    var blobRemaining = 0
    var partial = 0
    var error = ""

    /// Longest integer or length line accepted (a 64-bit integer with its sign).
    static let maxNumberLength = 20

    public init() {}

    /// Bytes of the incomplete reply already fed.
    public var partialBytes: Int { partial }

    /// Feeding fewer new bytes than this cannot complete a reply (useful for large bulks).
    public var bytesWanted: Int {
        switch phase {
        case .blob: return blobRemaining + 2
        case .failed: return 0
        default: return 1
        }
    }

    public var hasFailed: Bool { phase == .failed }

    public mutating func reset() { self = ReplyScanner() }

    /// Appends every reply completed within `segment` to `replies`.
    public mutating func feed(_ segment: UnsafeRawBufferPointer, replies: inout [ReplyInfo]) -> ParseStatus {
        if phase == .failed { return .protocolError(error) }
        guard segment.count > 0, let raw = segment.baseAddress else { return .ok }
        let base = raw.assumingMemoryBound(to: UInt8.self)
        let n = segment.count
        var p = 0
        var origin = -partial

        scan: while p < n {
            switch phase {
            case .type:
                let t = base[p]
                if !inReply { inReply = true; origin = p }
                p += 1
                let kind: LineKind
                switch t {
                case 0x2B, 0x2D, 0x2C: kind = .text              // + - ,
                case 0x3A, 0x28: kind = .integer                 // : (
                case 0x24, 0x21, 0x3D, 0x2A, 0x25, 0x7E, 0x3E, 0x7C: kind = .length  // $ ! = * % ~ > |
                case 0x5F: kind = .null                          // _
                case 0x23: kind = .boolean                       // #
                default:
                    return fail("Protocol error: invalid reply type byte \(describe(t))")
                }
                currentIsTop = pending == 1 && !topKnown && t != 0x7C
                if currentIsTop {
                    topKnown = true
                    top = ReplyInfo(end: 0, type: t, isPush: t == 0x3E, isError: t == 0x2D || t == 0x21)
                }
                lineKind = kind
                lineType = t
                lineCount = 0
                digits = 0
                sawCR = false
                number.reset()
                booleanSeen = false
                phase = .line

            case .line:
                while p < n {
                    let c = base[p]
                    p += 1
                    if sawCR {
                        if c == 0x0A {
                            if let status = lineEnded(&replies, p: p, origin: &origin) { return status }
                            continue scan
                        }
                        if lineKind != .text { return fail("Protocol error: CR without LF in reply line") }
                        sawCR = c == 0x0D
                        continue
                    }
                    if c == 0x0D { sawCR = true; continue }
                    switch lineKind {
                    case .text:
                        continue
                    case .integer:
                        lineCount += 1
                        if c &- 0x30 < 10 {
                            digits += 1
                            // Big numbers (`(`) may be as long as they like; integers are 64-bit.
                            if digits > 19 && lineType == 0x3A { return fail("Protocol error: integer too long in reply") }
                        } else if lineCount != 1 || (c != 0x2D && c != 0x2B) {
                            return fail("Protocol error: invalid integer in reply")
                        }
                    case .length:
                        number.add(c)
                        if number.count > ReplyScanner.maxNumberLength { return fail("Protocol error: invalid length in reply") }
                    case .null:
                        return fail("Protocol error: invalid null in reply")
                    case .boolean:
                        if booleanSeen || (c != 0x74 && c != 0x66) { return fail("Protocol error: invalid boolean in reply") }
                        booleanSeen = true
                    }
                }

            case .blob:
                let available = n - p
                if available < blobRemaining {
                    blobRemaining -= available
                    p = n
                    break scan
                }
                p += blobRemaining
                blobRemaining = 0
                phase = .blobCR

            case .blobCR:
                guard base[p] == 0x0D else { return fail("Protocol error: bulk payload not followed by CRLF") }
                p += 1
                phase = .blobLF

            case .blobLF:
                guard base[p] == 0x0A else { return fail("Protocol error: bulk payload not followed by CRLF") }
                p += 1
                phase = .type
                elementDone(&replies, p: p, origin: &origin)

            case .failed:
                return .protocolError(error)
            }
        }
        partial = inReply ? n - origin : 0
        return .ok
    }

    /// A line ended at `p` (just past its LF); nil unless it was malformed.
    mutating func lineEnded(_ replies: inout [ReplyInfo], p: Int, origin: inout Int) -> ParseStatus? {
        phase = .type
        switch lineKind {
        case .text:
            elementDone(&replies, p: p, origin: &origin)
        case .integer:
            if digits == 0 { return fail("Protocol error: invalid integer in reply") }
            elementDone(&replies, p: p, origin: &origin)
        case .null:
            if currentIsTop { top.isNull = true }
            elementDone(&replies, p: p, origin: &origin)
        case .boolean:
            if !booleanSeen { return fail("Protocol error: invalid boolean in reply") }
            elementDone(&replies, p: p, origin: &origin)
        case .length:
            guard let value = number.value, value >= -1 else {
                return fail("Protocol error: invalid length in reply")
            }
            if value == -1 {
                if lineType == 0x7C { return fail("Protocol error: invalid attribute length in reply") }
                if currentIsTop { top.isNull = true }
                elementDone(&replies, p: p, origin: &origin)
                return nil
            }
            switch lineType {
            case 0x24, 0x21, 0x3D:          // $ ! =
                guard value < Int64(Int.max - 2) else { return fail("Protocol error: invalid length in reply") }
                blobRemaining = Int(value)
                phase = .blob
            default:
                let (elements, o1) = lineType == 0x25 || lineType == 0x7C
                    ? Int(value).multipliedReportingOverflow(by: 2) : (Int(value), false)
                // An attribute owes its pairs and then the value it annotates: it consumes nothing.
                let consumed = lineType == 0x7C ? 0 : 1
                let (newPending, o2) = (pending - consumed).addingReportingOverflow(elements)
                if o1 || o2 { return fail("Protocol error: reply too large") }
                pending = newPending
                if pending == 0 { finishReply(&replies, p: p, origin: &origin) }
            }
        }
        return nil
    }

    mutating func elementDone(_ replies: inout [ReplyInfo], p: Int, origin: inout Int) {
        pending -= 1
        if pending == 0 { finishReply(&replies, p: p, origin: &origin) }
    }

    mutating func finishReply(_ replies: inout [ReplyInfo], p: Int, origin: inout Int) {
        top.end = p
        replies.append(top)
        pending = 1
        topKnown = false
        inReply = false
        origin = p
        partial = 0
    }

    mutating func fail(_ message: String) -> ParseStatus {
        phase = .failed
        error = message
        return .protocolError(message)
    }

    func describe(_ byte: UInt8) -> String {
        if byte >= 0x21 && byte < 0x7F { return "'" + String(UnicodeScalar(byte)) + "'" }
        let digits = Array("0123456789abcdef".utf8)
        return "0x" + String(decoding: [digits[Int(byte >> 4)], digits[Int(byte & 15)]], as: UTF8.self)
    }
}
