/// Where one argument's bytes lie, relative to the first byte of its request.
public struct ArgSpan: Equatable, Sendable {
    public var offset: Int
    public var count: Int
    public init(offset: Int, count: Int) { self.offset = offset; self.count = count }
}

/// One complete client request found by `RequestParser`.
public struct RequestFrame: Equatable, Sendable {
    /// Bytes this request occupies in the stream, including its final CRLF (or LF).
    public var length: Int
    /// Number of arguments (0 for an ignored empty request).
    public var argc: Int
    /// The first argument, lowercased.
    public var name: CommandName
    /// Index of the first argument's span in the caller's `spans` (multibulk requests only).
    public var spanStart: Int
    /// Inline requests only: the arguments with quotes and escapes applied, as Redis splits them.
    public var inlineArgs: [[UInt8]]?
    /// `*0`, `*-1` or a blank inline line: Redis ignores these and sends no reply.
    public var isEmpty: Bool

    public init(length: Int, argc: Int, name: CommandName, spanStart: Int,
                inlineArgs: [[UInt8]]? = nil, isEmpty: Bool = false) {
        self.length = length
        self.argc = argc
        self.name = name
        self.spanStart = spanStart
        self.inlineArgs = inlineArgs
        self.isEmpty = isEmpty
    }

    public var isInline: Bool { inlineArgs != nil }
}

/// The verdict of a `feed`: every complete message before a protocol error is still delivered.
public enum ParseStatus: Equatable, Sendable {
    case ok
    /// The message Redis would send after "-ERR ", e.g. "Protocol error: invalid bulk length".
    case protocolError(String)
}
