import RESP
import Tiers
import Reactor

/// One client connection. Requests are parsed only to find their ends and names; their bytes move
/// to Redis without being copied or re-encoded, and reply bytes move back the same way.
///
/// A client starts on its loop's shared upstream connection (`SharedUpstream`), pipelined with
/// other clients. The first request that touches connection state (AUTH, SELECT, HELLO, MULTI,
/// SUBSCRIBE, blocking commands, CLIENT …; see `Worker.canShare`) pins the client to an upstream
/// connection of its own for the rest of its life, so every stateful feature behaves exactly as
/// on a direct connection. Replies stay in request order: a pinned client's dedicated requests
/// are sent only after every shared reply it was owed has arrived.
final class ClientSession: ConnectionDelegate, UpstreamLinkDelegate {
    // Members are internal, not private, only so that the session's own extensions
    // (ClientSession+Requests, +Replies, +Tiering, +Closing) can reach them.
    /// Workers outlive their sessions; `unowned(unsafe)` skips a refcount check per access.
    unowned(unsafe) let worker: Worker
    let client: Connection
    var dedicated: UpstreamLink?
    var pinned = false
    /// Requests sent now go on the worker's shared connection, one after another (`KeyBatch`).
    var onSharedRoute: Bool { !pinned && failure == nil && !isClosed }

    var parser: RequestParser
    var framer = ReplyFramer()
    /// Replies owed through the shared connection.
    var sharedOwed = 0
    /// Replies owed through the dedicated connection, in sequenced mode.
    var owed = 0
    /// False once the client entered a mode where replies are not one per request
    /// (SUBSCRIBE family, MONITOR, CLIENT REPLY): then bytes stream through uncounted.
    var sequenced = true
    /// Subscribed clients are in the pubsub output-buffer class.
    var subscribed = false
    /// MONITOR was sent: like a subscriber, never closed for being idle.
    var monitoring = false
    /// When the client last sent bytes or was given replies (loop milliseconds), for `timeout`.
    var lastInteraction: Int64
    /// Parsing goes on, or stopped at a request that waits (to pin, for earlier replies,
    /// behind a tiered command).
    var phase = SessionPhase.reading
    /// QUIT arrived: nothing after it is sent; +OK follows the replies owed, then the close.
    var quitting = false
    /// Redis has closed after QUIT; close once the proxy's own replies still pending are out.
    var closeWhenComposed = false
    /// The dedicated reply stream ended mid-reply; an error appended now would corrupt it.
    var midReply = false
    /// The connection became a byte pipe (replica link, or a reply that does not frame).
    var pipe = PipeMode()
    /// The dedicated upstream is gone: every request from now on gets this error.
    var failure: String?
    var protocolErrorAfterOwed: [UInt8]?
    var closeWhenFlushed = false
    /// The shared connection was over its high-water mark when this client's requests went
    /// out: the client is not read again until `sharedOutputDrained`.
    var sharedLinkFull = false
    var shuttingDown = false
    var lingerTimer: Timer?
    var softLimitSince: Int64 = 0
    var isClosed = false

    /// Replies the proxy reads, rewrites or makes itself (TIERS, INFO's # Tiers, tiered
    /// commands'), kept in request order.
    var sequencer = ReplySequencer()
    /// The database this client's commands run in (tracked from SELECT/RESET replies).
    var db: Int

    // Tiering (Sources/RespServer/Tiering).
    /// Between the client's MULTI and EXEC/DISCARD: commands are queued by Redis, not tiered.
    var inTransaction = false
    /// Keys written by tiered commands queued in that transaction.
    var transactionWrites: [TierKey] = []
    /// Keys the client has WATCHed since its last EXEC/DISCARD/UNWATCH/RESET (see `WatchGuard`).
    var watchedKeys: [TierKey] = []
    /// Who takes the reply of the request being dispatched, when tiering decided it there.
    var nextHandler: ReplyHandler?
    /// The key locks `nextHandler` holds (a blind write's), released if it is not sent after all.
    var nextHandlerLocks: [TierKey] = []
    /// `clientReadable` is running; `reparse`: it should run once more when done.
    var parsing = false
    var reparse = false
    /// The client sent AUTH or HELLO: its user, not the proxy's, runs its commands.
    var authenticatedItself = false
    /// auth-mode proxy: the user this client runs as (see `ProxyAuth`).
    var auth = ClientAuth()
    /// The client chose its user (AUTH, HELLO … AUTH): the proxy's token is not its business.
    var ownUser = false
    /// A new Entra ID token waits until this pinned connection is idle (`EntraReauth`).
    var reauthOwed: [[UInt8]]?
    /// SELECT/RESET requests sent and not yet answered: until they are, `db` may be out of date.
    var dbChangesInFlight = 0
    /// Folded commands (`KeyedOp+Fold`) still in doubt: while any is, only requests that take
    /// key locks may pass them.
    var foldsInDoubt = 0
    /// CLIENT TRACKING is on: the proxy's own reads go beside this connection (`OwnRequests`).
    var tracking = ClientTracking()

    convenience init(worker: Worker, fd: Int32, tls: TLSServer? = nil) {
        self.init(worker: worker, client: Connection(loop: worker.loop, fd: fd, tls: tls))
    }

    /// A session on `client`: an accepted socket, or an embedded connection (tests).
    init(worker: Worker, client: Connection) {
        self.worker = worker
        self.client = client
        self.parser = RequestParser(maxBulkLength: worker.config.protoMaxBulkLen)
        self.db = worker.config.upstream.db
        self.lastInteraction = worker.loop.nowMillis
        if let gate = worker.proxyAuth { auth = gate.initialState() }
        client.delegate = self
    }

    var allOwed: Int { sharedOwed + owed }
    /// Every reply asked for so far has reached the client's output.
    var allAnswered: Bool { allOwed == 0 && sequencer.isSettled }

    func connectionReadable(_ connection: Connection) {
        if connection === client {
            noteInteraction()
            clientReadable()
        } else {
            dedicatedReadable()
        }
    }

    /// Reads and dispatches what the client sent. A tiered command may let reading go on from
    /// inside a dispatch (once it is on its way): that asks for one more pass here instead of a
    /// nested one, so a long pipeline of tiered commands does not grow the stack.
    func clientReadable() {
        if parsing { reparse = true; return }
        parsing = true
        defer { parsing = false }
        repeat {
            reparse = false
            readRequests()
        } while reparse && !isClosed
    }

    func readRequests() {
        if phase != .reading || isClosed { return }
        let input = client.input
        let available = input.count
        if available > worker.config.clientQueryBufferLimit {
            Log.warning("Closing client that reached max query buffer length (qbuf=\(available))")
            close()
            return
        }
        if available - parser.partialBytes < parser.bytesWanted { return }   // a large bulk is still arriving

        worker.frames.removeAll(keepingCapacity: true)
        worker.spans.removeAll(keepingCapacity: true)
        var status = ParseStatus.ok
        input.withSegments(offset: parser.partialBytes) { segment in
            status = parser.feed(segment, frames: &worker.frames, spans: &worker.spans)
            return status == .ok
        }
        let frames = worker.frames
        if pinned { worker.metrics.add(.pinnedRequests, frames.count) }
        if !dispatch(frames) || isClosed { return }

        guard case .protocolError(let reason) = status else { return }
        let verdict = FailurePolicy.afterProtocolError(sequenced: sequenced, ownConnectionUp: dedicated != nil,
                                                       failed: failure != nil, allAnswered: allAnswered)
        if verdict == .redisJudges, let up = dedicated {
            quitting = true
            updateReading()
            input.moveAll(to: up.output)
            up.flush()
            return
        }
        // Redis's exact bytes (an echoed byte in "expected '$', got 'X'" need not be UTF-8).
        let message = parser.errorReply ?? Array("-ERR \(reason)\r\n".utf8)
        input.drain(input.count)
        if verdict == .answerAndClose {
            replyErrorAndClose(message)
        } else {
            protocolErrorAfterOwed = message
            updateReading()
        }
    }

    /// Parses again what waited in the input (a tiered command finished, or the replies it
    /// waited for arrived), unless the session is stopping.
    func resumeReading() {
        guard !readsNoMore else { return }
        updateReading()
        clientReadable()
    }

    /// Whether the client's socket may be read now; the one place that decides it. Not while a
    /// request waits its turn (to pin, for earlier replies, behind a tiered command: its later
    /// bytes wait in TCP, not here), nor once nothing more is to be read (QUIT, a protocol
    /// error, a failure, a close or shutdown under way), nor while what it sent or is sent
    /// waits over the high-water mark (on the shared or its own upstream connection, or a
    /// shared client's unread replies). Every event that lifts one of these calls `updateReading`.
    var mayRead: Bool {
        if readsNoMore || phase != .reading { return false }
        if sharedLinkFull || dedicated?.notifyWhenDrained == true { return false }
        return pinned || !client.notifyWhenDrained
    }

    /// Nothing more will be read from this client: QUIT, a protocol error, a failure, a close
    /// or shutdown under way.
    var readsNoMore: Bool {
        isClosed || shuttingDown || failure != nil || closeWhenFlushed || quitting || protocolErrorAfterOwed != nil
    }

    /// The only writer of `client.isReading`.
    func updateReading() { client.isReading = mayRead }

    func pauseForSharedLink() {
        sharedLinkFull = true
        updateReading()
    }

    func connectionEstablished(_ connection: Connection) {}   // only outgoing connections call it

    /// `Worker.flushLater`'s pass: writes what the fills of this pass left in the output.
    var flushQueued = false
    func flushQueuedOutput() {
        flushQueued = false
        if !isClosed { client.flush() }
    }

    /// The shared connection drained below its high-water mark: read this client again, if
    /// nothing else holds it.
    func sharedOutputDrained() {
        sharedLinkFull = false
        updateReading()
    }

    /// Pinned, on the proxy's user, and nothing between the client and Redis that an AUTH could
    /// disturb: no reply owed (so no blocking command waits), no transaction, no subscription,
    /// MONITOR or CLIENT REPLY mode, no handshake under way.
    var idleForReauth: Bool {
        guard pinned, let up = dedicated, !up.isHandshaking else { return false }
        return sequenced && !inTransaction && !ownUser && allAnswered && phase == .reading && failure == nil
            && !quitting && !shuttingDown && !pipe.on && !isClosed
    }

    func noteInteraction() {
        // Only with `timeout` set: the loop's clock is cheap, not free.
        if worker.config.timeoutSeconds > 0 { lastInteraction = worker.loop.nowMillis }
    }

    /// Since when the client has been idle, if `timeout` applies to it: as in Redis, not to
    /// subscribers, MONITOR or replica links, nor to a client waiting for a reply (a blocking
    /// command, a tiered one). A client that once subscribed stays spared: its replies are
    /// not counted, so the proxy cannot tell when it has left its last channel.
    var idleSince: Int64? {
        guard !isClosed && !subscribed && !monitoring && !pipe.replica && allAnswered
                && phase == .reading else { return nil }
        return lastInteraction
    }

    func connectionDrained(_ connection: Connection) {
        if connection === client {
            if closeWhenFlushed { close(); return }
            client.notifyWhenDrained = false
            dedicated?.isReading = true
            updateReading()
        }
    }

    func linkDrained(_ link: UpstreamLink) {
        link.notifyWhenDrained = false
        updateReading()
    }
}
