/// Finds client requests in a byte stream exactly as Redis 7.0 does (`processInputBuffer`,
/// `processMultibulkBuffer`, `processInlineBuffer` in src/networking.c), one contiguous
/// segment at a time.
///
/// Bulk payloads are skipped by counting, never copied; length lines are parsed a byte at a
/// time, so only an inline line that straddles segments is copied (at most 64 KiB).
///
/// Where this parser does not do what redis-server does, on purpose:
/// - Unterminated lines: Redis checks its 64 KiB limit after each read (up to 16 KiB), so a
///   line that arrives in one burst may pass it by up to a read's worth. Here the limit is
///   applied as if bytes came one at a time (the 65537th byte without a terminator fails),
///   so the verdict never depends on how the stream was split.
/// - "unauthenticated multibulk/bulk length" (Redis's limits before AUTH) are not checked:
///   the parser does not know the client's auth state; upstream Redis sees the same bytes.
/// - Master/replica-only rules and gopher mode do not apply to a proxy's clients.
/// - `ParseStatus` carries a Swift String, so the one message that echoes a raw byte
///   ("expected '$', got 'X'") shows a non-UTF-8 byte as U+FFFD; `errorReply` has Redis's
///   exact bytes.
public struct RequestParser {
    /// Redis's PROTO_INLINE_MAX_SIZE: an unterminated line longer than this is an error.
    public static let maxLineLength = 64 * 1024
    /// The largest multibulk count Redis 7.0 accepts (INT_MAX).
    public static let maxArgumentCount = Int(Int32.max)

    enum Phase: UInt8 {
        case start          // between requests
        case count          // "*<count>" up to its '\r'
        case countEnd       // after that '\r': any one byte ends the line
        case bulkHeader     // "$<length>" up to its '\r'
        case bulkHeaderEnd
        case payload        // skipping an argument and the two bytes after it
        case inline         // an inline line up to its '\n'
        case stuck          // a NUL ended Redis's strchr: no terminator can be seen any more
        case failed
    }

    public let maxBulkLength: Int

    var phase = Phase.start
    /// Bytes of the current request fed by earlier calls.
    var partial = 0
    /// Offset of the current line's first byte from the request's first byte.
    var lineStart = 0
    var number = RedisInteger()
    var headerFirstByte: UInt8 = 0
    var argc = 0
    var argsLeft = 0
    var argIndex = 0
    var bulkLength = 0
    /// Payload bytes plus the two trailing bytes still to skip.
    var bulkRemaining = 0
    var name = CommandName()
    /// Spans of a request begun in an earlier call (the caller may have cleared its array).
    var pendingSpans: [ArgSpan] = []
    var spansPending = false
    var spanBase = 0
    /// An inline line begun in an earlier segment.
    var lineBuffer: [UInt8] = []
    var stuckError = ""
    var isInlineRequest = false
    var error = ""
    /// Exact bytes of Redis's error reply for the protocol error, once one happened.
    public private(set) var errorReply: [UInt8]? = nil

    public init(maxBulkLength: Int = 512 << 20) {
        self.maxBulkLength = maxBulkLength
    }

    /// Bytes of the incomplete request already fed (the caller keeps them in its buffer).
    public var partialBytes: Int { phase == .start ? 0 : partial }

    /// Feeding fewer new bytes than this can neither complete a request nor reveal a protocol
    /// error (useful for large bulks): only the rest of the bulk being read counts, because the
    /// header of a later argument may be malformed and shorter than any well-formed one.
    public var bytesWanted: Int {
        switch phase {
        case .payload: return bulkRemaining
        case .failed: return 0
        default: return 1
        }
    }

    /// True once a protocol error was found; every later `feed` repeats it.
    public var hasFailed: Bool { phase == .failed }

    public mutating func reset() {
        self = RequestParser(maxBulkLength: maxBulkLength)
    }

    static let msgInvalidMultibulk = "Protocol error: invalid multibulk length"
    static let msgInvalidBulk = "Protocol error: invalid bulk length"
    static let msgBigMultibulk = "Protocol error: too big mbulk count string"
    static let msgBigBulk = "Protocol error: too big bulk count string"
    static let msgBigInline = "Protocol error: too big inline request"
    static let msgUnbalanced = "Protocol error: unbalanced quotes in request"

    /// Appends every request completed within `segment` to `frames` (their argument spans to
    /// `spans`) and keeps the state of an incomplete one for the next call.
    public mutating func feed(_ segment: UnsafeRawBufferPointer,
                              frames: inout [RequestFrame],
                              spans: inout [ArgSpan]) -> ParseStatus {
        if phase == .failed { return .protocolError(error) }
        guard segment.count > 0, let raw = segment.baseAddress else { return .ok }
        let base = raw.assumingMemoryBound(to: UInt8.self)
        let n = segment.count
        var p = 0
        // Where the current request began, in this segment's coordinates (negative when earlier).
        var origin = -partial

        scan: while p < n {
            switch phase {
            case .start:
                origin = p
                lineStart = 0
                isInlineRequest = base[p] != UInt8(ascii: "*")
                if !isInlineRequest {
                    phase = .count
                    number.reset()
                    spanBase = spans.count
                    p += 1
                } else {
                    phase = .inline
                    lineBuffer.removeAll(keepingCapacity: true)
                }

            case .count:
                let limit = origin + lineStart + RequestParser.maxLineLength
                while p < n {
                    let c = base[p]
                    if c == 0x0D { p += 1; phase = .countEnd; continue scan }
                    if c == 0 { phase = .stuck; stuckError = RequestParser.msgBigMultibulk; continue scan }
                    if p >= limit { return fail(RequestParser.msgBigMultibulk) }
                    number.add(c)
                    p += 1
                }

            case .countEnd:
                p += 1      // Redis only checks that a byte follows the '\r', not that it is '\n'
                guard let count = number.value, count <= RequestParser.maxArgumentCount else {
                    return fail(RequestParser.msgInvalidMultibulk)
                }
                if count <= 0 {
                    frames.append(RequestFrame(length: p - origin, argc: 0, name: CommandName(),
                                               spanStart: spans.count, isEmpty: true))
                    phase = .start
                } else {
                    argc = Int(count)
                    argsLeft = argc
                    argIndex = 0
                    startBulkHeader(at: p - origin)
                }

            case .bulkHeader:
                let lineBegin = origin + lineStart
                let limit = lineBegin + RequestParser.maxLineLength
                while p < n {
                    let c = base[p]
                    if c == 0 { phase = .stuck; stuckError = RequestParser.msgBigBulk; continue scan }
                    if p == lineBegin {
                        headerFirstByte = c     // may be the '\r' itself, as in Redis
                        if c == 0x0D { p += 1; phase = .bulkHeaderEnd; continue scan }
                    } else {
                        if c == 0x0D { p += 1; phase = .bulkHeaderEnd; continue scan }
                        if p >= limit { return fail(RequestParser.msgBigBulk) }
                        number.add(c)
                    }
                    p += 1
                }

            case .bulkHeaderEnd:
                p += 1
                guard headerFirstByte == UInt8(ascii: "$") else {
                    return fail(expectedDollarMessage(got: headerFirstByte))
                }
                guard let length = number.value, length >= 0, length <= Int64(maxBulkLength) else {
                    return fail(RequestParser.msgInvalidBulk)
                }
                bulkLength = Int(length)
                bulkRemaining = bulkLength + 2
                let span = ArgSpan(offset: p - origin, count: bulkLength)
                if spansPending { pendingSpans.append(span) } else { spans.append(span) }
                if argIndex == 0 { name.start(length: bulkLength) }
                phase = .payload

            case .payload:
                let available = n - p
                if argIndex == 0 {
                    let done = bulkLength + 2 - bulkRemaining
                    let want = Swift.min(bulkLength, CommandName.capacity)
                    if done < want {
                        let upTo = Swift.min(want, done + available)
                        var i = done
                        while i < upTo { name.setByte(i, base[p + i - done]); i += 1 }
                    }
                }
                if available < bulkRemaining {
                    bulkRemaining -= available
                    p = n
                    break scan
                }
                p += bulkRemaining      // the two bytes after the payload are not checked, as in Redis
                argIndex += 1
                argsLeft -= 1
                if argsLeft > 0 {
                    startBulkHeader(at: p - origin)
                } else {
                    let spanStart: Int
                    if spansPending {
                        spanStart = spans.count
                        spans.append(contentsOf: pendingSpans)
                        releasePendingSpans()
                    } else {
                        spanStart = spanBase
                    }
                    frames.append(RequestFrame(length: p - origin, argc: argc, name: name,
                                               spanStart: spanStart))
                    phase = .start
                }

            case .inline:
                let lineBegin = origin
                let limit = lineBegin + RequestParser.maxLineLength
                while p < n {
                    let c = base[p]
                    if c == 0x0A {
                        if let status = completeInline(base: base, origin: origin, newline: p,
                                                       frames: &frames, spans: spans) {
                            return status
                        }
                        p += 1
                        phase = .start
                        continue scan
                    }
                    if c == 0 {
                        phase = .stuck
                        stuckError = RequestParser.msgBigInline
                        lineBuffer.removeAll(keepingCapacity: true)
                        continue scan
                    }
                    if p >= limit { return fail(RequestParser.msgBigInline) }
                    p += 1
                }
                // The line goes on in the next segment: keep what this one holds of it.
                let from = Swift.max(origin, 0)
                lineBuffer.append(contentsOf: UnsafeBufferPointer(start: base + from, count: n - from))

            case .stuck:
                // Redis's strchr stops at the NUL, so it waits until the buffer passes 64 KiB.
                if n - (origin + lineStart) > RequestParser.maxLineLength { return fail(stuckError) }
                p = n

            case .failed:
                return .protocolError(error)
            }
        }

        if phase == .start {
            partial = 0
        } else {
            partial = n - origin
            if !isInlineRequest && !spansPending {
                // The caller may clear its arrays before the next call: keep this request's spans.
                if spans.count > spanBase {
                    pendingSpans.append(contentsOf: spans[spanBase...])
                    spans.removeSubrange(spanBase...)
                }
                spansPending = true
            }
        }
        return .ok
    }

    mutating func startBulkHeader(at offset: Int) {
        lineStart = offset
        number.reset()
        headerFirstByte = 0
        phase = .bulkHeader
    }

    mutating func releasePendingSpans() {
        spansPending = false
        if pendingSpans.capacity > 4096 { pendingSpans = [] } else { pendingSpans.removeAll(keepingCapacity: true) }
    }

    /// Splits the inline line ending at `newline` (segment index); nil when all went well.
    mutating func completeInline(base: UnsafePointer<UInt8>, origin: Int, newline: Int,
                                 frames: inout [RequestFrame], spans: [ArgSpan]) -> ParseStatus? {
        let args: [[UInt8]]?
        if origin >= 0 {
            var end = newline
            if end > origin && base[end - 1] == 0x0D { end -= 1 }
            args = InlineSplitter.split(UnsafeRawBufferPointer(start: base + origin, count: end - origin))
        } else {
            lineBuffer.append(contentsOf: UnsafeBufferPointer(start: base, count: newline))
            if lineBuffer.last == 0x0D { lineBuffer.removeLast() }
            args = lineBuffer.withUnsafeBytes { InlineSplitter.split($0) }
            lineBuffer.removeAll(keepingCapacity: true)
        }
        guard let args else { return fail(RequestParser.msgUnbalanced) }
        let length = newline + 1 - origin
        if args.isEmpty {
            frames.append(RequestFrame(length: length, argc: 0, name: CommandName(),
                                       spanStart: spans.count, isEmpty: true))
        } else {
            frames.append(RequestFrame(length: length, argc: args.count, name: CommandName(args[0]),
                                       spanStart: spans.count, inlineArgs: args))
        }
        return nil
    }

    mutating func fail(_ message: String) -> ParseStatus {
        fail(Array(message.utf8))
    }

    /// Records the error; `message` is raw bytes because Redis echoes a raw byte in one message.
    mutating func fail(_ message: [UInt8]) -> ParseStatus {
        phase = .failed
        error = String(decoding: message, as: UTF8.self)
        errorReply = Array("-ERR ".utf8) + message + [0x0D, 0x0A]
        lineBuffer = []
        pendingSpans = []
        spansPending = false
        return .protocolError(error)
    }

    /// "Protocol error: expected '$', got 'X'", with CR and LF turned into spaces as Redis's
    /// addReplyErrorFormat does.
    func expectedDollarMessage(got byte: UInt8) -> [UInt8] {
        let shown: UInt8 = (byte == 0x0D || byte == 0x0A) ? 0x20 : byte
        return Array("Protocol error: expected '$', got '".utf8) + [shown, UInt8(ascii: "'")]
    }
}
