/// One complete top-level reply found by a `ReplyFramer`.
public struct ReplyEnd: Equatable, Sendable {
    /// One past the reply's last byte, counted in the stream the caller reads (see `scan`'s `base`).
    public var end: Int
    public var isNull: Bool
    /// A RESP3 push: not the answer to a request.
    public var isPush: Bool

    public init(end: Int, isNull: Bool = false, isPush: Bool = false) {
        self.end = end
        self.isNull = isNull
        self.isPush = isPush
    }
}

/// Finds where replies end in a buffer that comes in segments: the loop every reader of
/// upstream replies needs (the shared connection, a client's own, the proxy's own requests,
/// the handshake, the COMMAND table), written once. The scanner's state carries over from one
/// `scan` to the next, so a reply still arriving is not fed twice: feed only bytes not fed before.
public struct ReplyFramer {
    private var scanner = ReplyScanner()
    /// The scanner's answer for one segment (kept: its capacity is reused).
    private var found: [ReplyInfo] = []

    public init() {}

    /// Feeds the segments `segments` yields (a buffer's `withSegments`) and appends each complete
    /// reply to `ends`, its end counted from `base`, the stream offset of the first byte fed.
    /// Pushes are appended only with `keepPushes`. Stops after a segment that does not scan, or
    /// once `ends` holds `enough` replies. Returns the scan's status and one past the last byte fed
    /// (`base` plus the bytes fed).
    public mutating func scan(_ segments: ((UnsafeRawBufferPointer) -> Bool) -> Void, from base: Int = 0,
                              into ends: inout [ReplyEnd], keepPushes: Bool = false,
                              until enough: Int = .max) -> (status: ParseStatus, fed: Int) {
        var fed = base
        var status = ParseStatus.ok
        segments { segment in
            found.removeAll(keepingCapacity: true)
            status = scanner.feed(segment, replies: &found)
            for r in found where keepPushes || !r.isPush {
                ends.append(ReplyEnd(end: fed + r.end, isNull: r.isNull, isPush: r.isPush))
            }
            fed += segment.count
            return status == .ok && ends.count < enough
        }
        return (status, fed)
    }
}
