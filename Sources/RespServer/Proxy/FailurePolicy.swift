/// How a client session ends when something fails: the decisions, in one place, as pure
/// functions of what the session holds at that moment (`ClientSession+Closing` carries them out).
/// The principle is Redis's: a client is never sent a reply out of its place, so wherever the
/// proxy could no longer put an error reply where it belongs, it closes instead.
enum FailurePolicy {
    /// What a session holds when its own upstream connection is lost.
    struct UpstreamLoss: Equatable {
        /// The reply stream ended inside a reply: an error appended now would corrupt it.
        var midReply = false
        /// The proxy's own handlers still wait for replies.
        var interceptsPending = false
        /// An intercepted reply is half captured.
        var capturing = false
        /// Output waits behind reply slots the proxy is still composing.
        var holding = false
        /// QUIT (or malformed bytes Redis was given to judge) came before: Redis closed on purpose.
        var quitting = false
        /// Counted requests sent and not answered.
        var unanswered = 0
        /// A protocol error waits to be answered after the replies owed.
        var protocolErrorOwed = false
        /// Replies wait in the client's output, not yet written.
        var outputPending = false
        var shuttingDown = false
        /// Redis had accepted the connection (it was not a failed connect or handshake).
        var wasConnected = false
    }

    enum Verdict: Equatable {
        /// Redis closed after QUIT with every reply it owed delivered; only the proxy's own
        /// replies are still being composed: finish those, then close.
        case finishComposedThenClose
        case closeNow
        /// Write `errors` error replies (and the protocol error owed), then close once written.
        case answerThenClose(errors: Int)
        /// Nothing was owed yet: wait briefly for a request, so that it gets an error reply
        /// rather than a bare close.
        case linger
    }

    /// The handlers still waiting are failed before anything else (with an error as their reply,
    /// so they finish and let their key locks go), unless a reply was cut in half.
    static func failsInterceptsFirst(_ l: UpstreamLoss) -> Bool {
        l.interceptsPending && !l.midReply && !l.capturing
    }

    /// What follows the loss of the session's own upstream connection (after the pending
    /// handlers were failed, if `failsInterceptsFirst`).
    static func afterUpstreamLoss(_ l: UpstreamLoss) -> Verdict {
        let composing = l.holding && !l.midReply && !l.interceptsPending && !l.capturing
        if l.quitting && composing { return .finishComposedThenClose }
        // A reply cut in half, or replies still to compose, cannot be followed by sensible errors.
        if l.midReply || l.holding || l.interceptsPending || l.capturing { return .closeNow }
        if l.unanswered > 0 || l.protocolErrorOwed || l.outputPending {
            // A connection Redis had accepted and then closed (CLIENT KILL, timeout, Redis going
            // away) answers nothing more: a direct client sees the close, so does this one.
            return .answerThenClose(errors: l.wasConnected ? 0 : l.unanswered)
        }
        if l.shuttingDown || l.wasConnected || l.quitting { return .closeNow }
        return .linger
    }

    enum ProtocolErrorVerdict: Equatable {
        /// Replies are not counted, so the proxy cannot place the error itself: Redis gets the
        /// same bytes and answers (or, under CLIENT REPLY OFF, doesn't) in order, then closes.
        case redisJudges
        /// The error goes out now, then the close.
        case answerAndClose
        /// The error follows the replies still owed, then the close.
        case answerAfterOwed
    }

    /// Malformed bytes from the client: as Redis, answer what came before them, then the
    /// error, then close.
    static func afterProtocolError(sequenced: Bool, ownConnectionUp: Bool, failed: Bool,
                                   allAnswered: Bool) -> ProtocolErrorVerdict {
        if !sequenced && ownConnectionUp && !failed { return .redisJudges }
        return allAnswered || !sequenced || failed ? .answerAndClose : .answerAfterOwed
    }
}
