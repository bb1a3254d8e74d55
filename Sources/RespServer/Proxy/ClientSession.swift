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
    /// Workers outlive their sessions; `unowned(unsafe)` skips a refcount check per access.
    unowned(unsafe) let worker: Worker
    let client: Connection
    private(set) var dedicated: UpstreamLink?
    private var pinned = false
    /// Requests sent now go on the worker's shared connection, one after another (`KeyBatch`).
    var onSharedRoute: Bool { !pinned && failure == nil && !isClosed }

    private var parser: RequestParser
    private var scanner = ReplyScanner()
    /// Replies owed through the shared connection.
    private(set) var sharedOwed = 0
    /// Replies owed through the dedicated connection, in sequenced mode.
    private(set) var owed = 0
    /// False once the client entered a mode where replies are not one per request
    /// (SUBSCRIBE family, MONITOR, CLIENT REPLY): then bytes stream through uncounted.
    private(set) var sequenced = true
    /// Subscribed clients are in the pubsub output-buffer class.
    private var subscribed = false
    /// MONITOR was sent: like a subscriber, never closed for being idle.
    private var monitoring = false
    /// When the client last sent bytes or was given replies (loop milliseconds), for `timeout`.
    private var lastInteraction: Int64
    /// Parsing stopped at a request that must wait for shared replies before pinning.
    private var waitingToPin = false
    /// QUIT arrived: nothing after it is sent; +OK follows the replies owed, then the close.
    private var quitting = false
    /// Redis has closed after QUIT; close once the proxy's own replies still pending are out.
    private var closeWhenComposed = false
    /// The dedicated reply stream ended mid-reply; an error appended now would corrupt it.
    private var midReply = false
    /// The connection became a byte pipe (replica link, or a reply that does not frame).
    private var pipe = PipeMode()
    /// The dedicated upstream is gone: every request from now on gets this error.
    private var failure: String?
    private var protocolErrorAfterOwed: [UInt8]?
    private var closeWhenFlushed = false
    /// The shared connection was over its high-water mark when this client's requests went
    /// out: the client is not read again until `sharedOutputDrained`.
    private var sharedLinkFull = false
    private var shuttingDown = false
    private var lingerTimer: Timer?
    private var softLimitSince: Int64 = 0
    private(set) var isClosed = false

    // Replies the proxy rewrites or makes itself (TIERS, INFO's # Tiers …), kept in request order.
    /// Requests whose reply goes to a handler instead of the client, by request sequence number.
    private var intercepts: [Intercept] = []
    /// The keys of GETs in `intercepts`, back to back (reused: a hit costs no allocation).
    private var getKeys: [UInt8] = []
    private var interceptHead = 0
    /// Output waiting behind a reply slot not yet filled; empty means replies go straight out.
    private var held: [HeldPart] = []
    /// The start of an intercepted reply still arriving.
    private var capture: Buffer?
    /// Requests sent that owe a reply, and replies taken, counted since the session began.
    private var requestsSent = 0
    private var repliesTaken = 0
    /// The database this client's commands run in (tracked from SELECT/RESET replies).
    private(set) var db: Int

    // Tiering (Sources/RespServer/Tiering).
    /// A tiered command is running: later requests wait in the input until it has answered.
    private var keyedOpRunning = false
    /// Parsing stopped at a tiered command that waits for every earlier reply first.
    private var waitingForBarrier = false
    /// Between the client's MULTI and EXEC/DISCARD: commands are queued by Redis, not tiered.
    private var inTransaction = false
    /// Keys written by tiered commands queued in that transaction.
    private var transactionWrites: [TierKey] = []
    /// Keys the client has WATCHed since its last EXEC/DISCARD/UNWATCH/RESET (see `WatchGuard`).
    private(set) var watchedKeys: [TierKey] = []
    /// Who takes the reply of the request being dispatched, when tiering decided it there.
    private var nextHandler: ReplyHandler?
    /// The key locks `nextHandler` holds (a blind write's), released if it is not sent after all.
    private var nextHandlerLocks: [TierKey] = []
    /// `clientReadable` is running; `reparse`: it should run once more when done.
    private var parsing = false
    private var reparse = false
    /// The client sent AUTH or HELLO: its user, not the proxy's, runs its commands.
    private var authenticatedItself = false
    /// auth-mode proxy: the user this client runs as (see `ProxyAuth`).
    private var auth = ClientAuth()
    /// The client chose its user (AUTH, HELLO … AUTH): the proxy's token is not its business.
    private var ownUser = false
    /// A new Entra ID token waits until this pinned connection is idle (`EntraReauth`).
    var reauthOwed: [[UInt8]]?
    /// SELECT/RESET requests sent and not yet answered: until they are, `db` may be out of date.
    private var dbChangesInFlight = 0
    /// CLIENT TRACKING is on: the proxy's own reads go beside this connection (`OwnRequests`).
    private(set) var tracking = ClientTracking()

    init(worker: Worker, fd: Int32, tls: TLSServer? = nil) {
        self.worker = worker
        self.client = Connection(loop: worker.loop, fd: fd, tls: tls)
        self.parser = RequestParser(maxBulkLength: worker.config.protoMaxBulkLen)
        self.db = worker.config.upstream.db
        self.lastInteraction = worker.loop.nowMillis
        if let gate = worker.proxyAuth { auth = gate.initialState() }
        client.delegate = self
    }

    private var allOwed: Int { sharedOwed + owed }
    /// Every reply asked for so far has reached the client's output.
    private var allAnswered: Bool { allOwed == 0 && held.isEmpty && capture == nil }
    private var interceptsPending: Bool { interceptHead < intercepts.count }

    // MARK: - Requests: client → upstream

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
    private func clientReadable() {
        if parsing { reparse = true; return }
        parsing = true
        defer { parsing = false }
        repeat {
            reparse = false
            readRequests()
        } while reparse && !isClosed
    }

    private func readRequests() {
        if waitingToPin || keyedOpRunning || waitingForBarrier || isClosed { return }
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

        if case .protocolError = status, !sequenced, let up = dedicated, failure == nil {
            // Replies are not countable in this mode, so the proxy cannot place the error itself:
            // Redis gets the same bytes and answers (or, under CLIENT REPLY OFF, doesn't) in order.
            client.isReading = false
            input.moveAll(to: up.output)
            up.flush()
            quitting = true
            return
        }
        if case .protocolError(let reason) = status {
            // Redis answers what came before the bad bytes, then the error, then closes.
            // Redis's exact bytes (an echoed byte in "expected '$', got 'X'" need not be UTF-8).
            let message = parser.errorReply ?? Array("-ERR \(reason)\r\n".utf8)
            client.isReading = false
            input.drain(input.count)
            if allAnswered || !sequenced || failure != nil {
                replyErrorAndClose(message)
            } else {
                protocolErrorAfterOwed = message
            }
        }
    }

    /// Sends complete requests on their way, in order. Returns false if it stopped early to pin.
    private func dispatch(_ frames: [RequestFrame]) -> Bool {
        let input = client.input
        if failure != nil {
            var consumed = 0, answered = 0
            for frame in frames {
                consumed += frame.length
                if !frame.isEmpty { answered += 1 }
            }
            input.drain(consumed)
            if answered > 0 { answerWithFailure(count: answered) }
            return true
        }
        var forward = 0          // bytes at the front of `input` ready to go
        var replies = 0          // replies those bytes will bring (shared route)
        for frame in frames {
            if frame.isEmpty {
                if !sequenced {
                    // No reply either way, but Redis ends a CLIENT REPLY SKIP on it: let it see it.
                    forward += frame.length
                    continue
                }
                send(&forward, &replies)
                input.drain(frame.length)
                continue
            }
            if frame.name == Commands.quit && sequenced {
                // Redis answers +OK and closes, ignoring what follows; so does the proxy, in order.
                send(&forward, &replies)
                quitting = true
                client.isReading = false
                input.drain(input.count)
                parser.reset()
                afterReplies()
                return false
            }
            var reauthenticate = false
            if let gate = worker.proxyAuth {
                switch gate.judge(frame, &auth, inTransaction: inTransaction, args: { arguments(frame, at: forward) }) {
                case .pass: break
                case .reset: reauthenticate = true
                case .rewrite(let bytes):
                    // Sent as the client's own bytes: parsed again from here.
                    send(&forward, &replies)
                    input.drain(frame.length)
                    input.prepend(bytes)
                    parser.reset()
                    reparse = true
                    return false
                case .answer(let reply, let endsTransaction):
                    send(&forward, &replies)
                    if !answerInPlace(frame, reply, endsTransaction: endsTransaction) { return waitForEarlierReplies() }
                    continue
                }
            }
            if sequenced && frame.name == Commands.tiers {
                // Not a Redis command: answered by the proxy, in its place among the replies.
                send(&forward, &replies)
                let args = arguments(frame, at: 0)
                input.drain(frame.length)
                let plan = TiersCommand.plan(args, session: self)
                expectReply(handler: plan.handler)
                sendProxyRequest(plan.upstreamCommand)
                continue
            }
            var tiered = tieredRoute(frame, at: forward)
            if foldsInDoubt > 0 && !takesKeyLocks(tiered?.0) {
                // An earlier command may have run on a key hot had lost (`KeyedOp+Fold`): what
                // takes no key lock waits until every earlier reply is in.
                send(&forward, &replies)
                return waitForEarlierReplies()
            }
            if case (.blocking(let plan), let args)? = tiered, let core = worker.tierAccess?.core,
               dbChangesInFlight > 0 || BlockingRun.fastPath(plan, args, db: db, access: worker.tierAccess!) {
                // Nothing to bring up (or its db is not settled yet): it runs as it is, and what
                // it took is captured once it has answered (`BlockedWrite`).
                let written = plan.written.map { TierKey(db: $0.db ?? db, args[$0.index]) }
                if !written.isEmpty {
                    let mark = BlockingMark(plan.deletes.map { TierKey(db: $0.db ?? db, args[$0.index]) }, core: core)
                    nextHandler = { [unowned self] reply, slot in
                        BlockedWrite.answered(written, reply: reply, session: self) { [weak self] in
                            withExtendedLifetime(mark) { self?.fill(slot, reply) }
                        }
                    }
                }
                tiered = nil
            } else if case (.keyed(let plan), let args)? = tiered, let blind = plan.blind, let handler = pipelined(blind, plan, args) {
                // Travels as it is, pipelined; its reply is read on the way back.
                nextHandler = handler
                tiered = nil
            }
            if frame.name == Commands.script { noticeScriptLoad(frame, at: forward) }
            if frame.name == Commands.function { noticeFunctionChange(frame, at: forward) }
            if (frame.name == Commands.auth || frame.name == Commands.hello) && worker.proxyAuth == nil { authenticatedItself = true }
            if worker.proxyAuth == nil && (frame.name == Commands.auth || (frame.name == Commands.hello && (2..<max(frame.argc, 2)).contains(where: {
                argument(frame, $0, at: forward).lowercased() == "auth" }))) { ownUser = true }
            if frame.name == Commands.watch && !inTransaction && worker.tierAccess != nil {
                watchedKeys += (1..<max(frame.argc, 1)).map { TierKey(db: db, argumentBytes(frame, $0, at: forward)) }
            }
            if frame.name == Commands.quit {
                // Uncounted mode: the proxy is a plain pipe. Redis answers QUIT (or, under
                // CLIENT REPLY OFF, does not) and decides what follows; when it closes, so do we.
                quitting = true
            }
            if !pinned {
                // A client with many shared requests in flight is pinned instead: its own
                // connection lets TCP, and Redis's buffers, hold what it has not read yet.
                if worker.canShare(frame) && sharedOwed + replies < Worker.maxSharedInFlight && tiered == nil {
                    if sequenced { expectReply(for: frame, at: forward) }
                    forward += frame.length
                    replies += 1
                    continue
                }
                send(&forward, &replies)
                // A tiered command that may share runs on the shared route (it waits for every
                // earlier reply anyway); anything else that may not share pins the client.
                if tiered == nil || !worker.canShare(frame) {
                    if sharedOwed > 0 {
                        // Pin only once every shared reply is in; re-parse from this request then.
                        waitingToPin = true
                        client.isReading = false
                        parser.reset()
                        abandonNextHandler()   // the request is dispatched again after the pin
                        Log.debug("Client waits for \(sharedOwed) shared replies before pinning (\(frame.name))")
                        return false
                    }
                    pin()
                    if isClosed { abandonNextHandler(); return false }
                }
            }
            if let (route, args) = tiered {
                send(&forward, &replies)
                if !allAnswered && !mayOverlap(route) {
                    // Its bring-up and its db must follow every earlier reply: wait for them.
                    waitingForBarrier = true
                    client.isReading = false
                    parser.reset()
                    return false
                }
                input.drain(frame.length)
                startTiered(route, args)
                return false
            }
            let replication = sequenced && PipeMode.startsReplication(frame.name)
            if replication {
                // Perhaps a replica link from here on: the replies before it are framed first.
                send(&forward, &replies)
                guard allAnswered else { return waitForEarlierReplies() }
                pipe.awaitingReplication = true
            }
            if inTransaction && sequenced && pinned && frame.name == Commands.exec, let access = worker.tierAccess,
               let capture = ExecCapture(writes: transactionWrites, db: db, core: access.core) {
                send(&forward, &replies)
                input.drain(frame.length)
                noticeTransaction(frame.name)
                startExec(capture)
                return false
            }
            if inTransaction { noteTransactionWrite(frame, at: forward) }
            if sequenced { expectReply(for: frame, at: forward) }
            notice(frame, at: forward)
            noticeTransaction(frame.name)
            if sequenced { owed += 1 }
            forward += frame.length
            if reauthenticate { send(&forward, &replies); reauthenticateUpstream() }
            if replication {
                // The answer's first byte decides whether a pipe follows; the rest waits for it.
                send(&forward, &replies)
                return waitForEarlierReplies()
            }
        }
        send(&forward, &replies)
        return true
    }

    /// auth-mode proxy: answers `frame` (at the input's front) itself, after every earlier reply;
    /// false if those are still owed (it is parsed again once they are out).
    private func answerInPlace(_ frame: RequestFrame, _ reply: [UInt8], endsTransaction: Bool) -> Bool {
        if endsTransaction && inTransaction {
            client.input.drain(frame.length)
            noticeTransaction(Commands.discard)
            sendComposed([[Array("DISCARD".utf8)]]) { [unowned self] _, slot in fill(slot, reply) }
            return true
        }
        if sequenced && !allAnswered { return false }
        client.input.drain(frame.length)
        client.output.append(reply)
        worker.flushLater(self)
        return true
    }

    /// auth-mode proxy: RESET made the upstream connection its default user; the proxy's own
    /// AUTH and SELECT go again, their replies unseen.
    private func reauthenticateUpstream() {
        guard case .success(let handshake)? = worker.credential.shared.handshake(), handshake.replies > 0 else { return }
        for _ in 0..<handshake.replies { expectReply(handler: { [unowned self] _, slot in fill(slot, []) }) }
        sendProxyRequest(handshake.bytes, replies: handshake.replies)
    }

    /// Stops at the request being dispatched until every earlier reply is out; it is parsed
    /// again then (`afterReplies`). Returns false, as `dispatch` does when it stops early.
    private func waitForEarlierReplies() -> Bool {
        waitingForBarrier = true
        client.isReading = false
        parser.reset()
        return false
    }

    /// The tiered handling `frame` needs beyond forwarding (GET and MGET need none: their
    /// replies are read on the way back), with its arguments; nil for every other command.
    private func tieredRoute(_ frame: RequestFrame, at offset: Int) -> (TieredCommand.Route, [[UInt8]])? {
        guard sequenced && !inTransaction else { return nil }
        return tieredCommand(frame, at: offset)
    }

    /// How `frame` is tiered, with its arguments, whatever the session's mode; nil if it is not
    /// (or is GET/MGET, which are only read on the way back).
    private func tieredCommand(_ frame: RequestFrame, at offset: Int) -> (TieredCommand.Route, [[UInt8]])? {
        guard let access = worker.tierAccess, frame.name != Commands.get && frame.name != Commands.mget
                && worker.mayBeTiered(frame.name) else { return nil }
        let args = arguments(frame, at: offset)
        let core = access.core
        return TieredCommand.route(frame.name, args, table: worker.commandTable, scripts: core.scripts,
                                   strictScripts: core.strictScripts).map { ($0, args) }
    }

    /// Moves `forward` bytes from the client's input to the route they belong to.
    private func send(_ forward: inout Int, _ replies: inout Int) {
        guard forward > 0 else { return }
        defer { forward = 0; replies = 0 }
        if !pinned {
            sharedOwed += replies
            if !worker.shared.send(from: self, bytes: forward, replies: replies) { pauseForSharedLink() }
            return
        }
        guard let up = dedicated else { return }
        client.input.move(forward, to: up.output)
        if !up.flush() && up.output.count > worker.config.proxyBufferHighWater {
            // Redis is behind: stop reading this client until the upstream socket drains.
            client.isReading = false
            up.drainedAt = worker.config.proxyBufferHighWater / 2
            up.notifyWhenDrained = true
        }
    }

    /// Sends a request the proxy composed (in place of the client's), on the client's route.
    private func sendProxyRequest(_ bytes: [UInt8], replies: Int = 1) {
        if !pinned {
            sharedOwed += replies
            if !worker.shared.send(from: self, payload: bytes, replies: replies) { pauseForSharedLink() }
        } else if let up = dedicated {
            owed += replies
            up.output.append(bytes)
            up.flush()
        } else {
            owed += replies   // the dedicated connection failed: dedicatedFailed answers it
        }
    }

    // MARK: - Tiered commands

    var tierAccess: TierAccess? { worker.tierAccess }
    var hot: HotClient { worker.hot }

    /// Runs a tiered command while the client's later requests wait; they are parsed again
    /// once it has answered.
    private func startTiered(_ route: TieredCommand.Route, _ args: [[UInt8]]) {
        keyedOpRunning = true
        client.isReading = false
        parser.reset()
        let access = worker.tierAccess!
        let finished: () -> Void = { [self] in tieredFinished() }
        switch route {
        case .keyed(let plan) where mayOverlap(route):
            // Later requests wait only until this one is on its way; its reply holds their place.
            KeyedOp(session: self, args: args, plan: plan, access: access, sent: finished, done: {}).start()
        case .keyed(let plan):
            KeyedOp(session: self, args: args, plan: plan, access: access, done: finished).start()
        case .flush(let all):
            FlushOp.run(args, all: all, session: self, access: access, done: finished)
        case .swapdb:
            SwapOp.run(args, session: self, access: access, done: finished)
        case .keyspace(let command):
            KeyspaceOp.run(command, args, session: self, access: access, done: finished)
        case .refused(let message):
            sendComposed([[Array("PING".utf8)]]) { [self] _, slot in
                fill(slot, ReplyParts.errorReply(message))
                finished()
            }
        case .blocking(let plan):
            // Later requests are read again once it is sent: it may block on hot for long.
            BlockingRun(session: self, args: args, plan: plan, access: access, done: finished).start()
        case .get, .mget:
            break
        }
    }

    /// A blind write's reply handler, with its keys' locks taken; nil when it must take the
    /// ordinary tiered way instead (a key busy, a SELECT still in flight, a rule's default expiry).
    private func pipelined(_ blind: BlindWrite, _ plan: TieredCommand.KeyedPlan, _ args: [[UInt8]]) -> ReplyHandler? {
        guard dbChangesInFlight == 0, let access = worker.tierAccess, !access.core.swapping else { return nil }
        let core = access.core
        var keys: [TierKey] = []
        for k in plan.written {
            let key = TierKey(db: db, args[k.index])
            if blind.expiry == .none && core.rules.rule(for: key.bytes).ttlSeconds != nil { return nil }
            guard core.isTiered(key), !keys.contains(key) else { continue }
            keys.append(key)
        }
        guard core.locks.tryAcquire(keys) else { return nil }
        nextHandlerLocks = keys
        return BlindWriteRun.handler(blind, args, db: db, locked: keys, access: access, hot: worker.hot,
                                     homeDB: worker.config.upstream.db) { [unowned self] slot, reply in fill(slot, reply) }
    }

    /// The client's EXEC, when its transaction wrote tiered keys: the states it leaves them in
    /// are read inside it (`ExecCapture`), and later requests wait until EXEC has answered.
    private func startExec(_ capture: ExecCapture) {
        keyedOpRunning = true
        client.isReading = false
        parser.reset()
        capture.run(session: self, access: worker.tierAccess!, hot: worker.hot, homeDB: worker.config.upstream.db) { [self] in
            tieredFinished()
        }
    }

    /// The request whose reply `nextHandler` was to take is not sent now: let its locks go.
    private func abandonNextHandler() {
        guard nextHandler != nil else { return }
        nextHandler = nil
        if let access = worker.tierAccess { access.core.locks.release(nextHandlerLocks) }
        nextHandlerLocks = []
    }

    /// True if a tiered command may start while earlier replies are still owed, and later
    /// requests may go once it has been sent: its db is settled (no SELECT in flight), the proxy's
    /// own transaction cannot touch the client's watches, and the client uses the proxy's own
    /// credentials (so the proxy's captures will not be refused and need running again), and does
    /// not track keys (its bring-up runs beside its connection: only once its earlier requests ran).
    /// Folded commands (`KeyedOp+Fold`) still in doubt: while any is, only requests that take
    /// key locks may pass them.
    var foldsInDoubt = 0

    private func takesKeyLocks(_ route: TieredCommand.Route?) -> Bool {
        switch route {
        case .keyed?, .blocking?: return true
        default: return false
        }
    }

    private func mayOverlap(_ route: TieredCommand.Route) -> Bool {
        // A blocking command's bring-up goes beside the client's connection, so only its db
        // must be settled (`BlockingRun`; dispatch sends it as it is otherwise).
        if case .blocking = route { return dbChangesInFlight == 0 }
        guard case .keyed = route else { return false }
        return dbChangesInFlight == 0 && watchedKeys.isEmpty && !authenticatedItself && !tracking.on
    }

    private func tieredFinished() {
        keyedOpRunning = false
        resumeReading()
    }

    /// Parses again what waited in the input (a tiered command finished, or the replies it
    /// waited for arrived), unless the session is stopping.
    private func resumeReading() {
        guard !isClosed, !shuttingDown, failure == nil, !closeWhenFlushed, !quitting else { return }
        updateReading()
        clientReadable()
    }

    /// Whether the client's socket may be read now; the one place that decides it. Not while a
    /// request waits its turn (to pin, for earlier replies, behind a tiered command: its later
    /// bytes wait in TCP, not here), nor once nothing more is to be read (QUIT, a protocol
    /// error, a failure, a close or shutdown under way), nor while what it sent or is sent
    /// waits over the high-water mark (on the shared or its own upstream connection, or a
    /// shared client's unread replies). Every event that lifts one of these calls `updateReading`.
    private var mayRead: Bool {
        if isClosed || shuttingDown || failure != nil || closeWhenFlushed || quitting || protocolErrorAfterOwed != nil {
            return false
        }
        if waitingToPin || keyedOpRunning || waitingForBarrier { return false }
        if sharedLinkFull || dedicated?.notifyWhenDrained == true { return false }
        return pinned || !client.notifyWhenDrained
    }

    private func updateReading() { client.isReading = mayRead }

    private func pauseForSharedLink() {
        sharedLinkFull = true
        client.isReading = false
    }

    /// Sends `commands` on the client's route as one write (nothing of another client's can
    /// come between them on a shared connection); `done` gets every reply, and the slot of the
    /// last one, which it must fill with what the client is to see. The others show nothing.
    func sendComposed(_ commands: [[[UInt8]]], _ done: @escaping (_ replies: [[UInt8]], _ slot: ReplySlot) -> Void) {
        // Nothing to send (e.g. a capture with no key to read): no reply, and a slot nobody waits on.
        guard !commands.isEmpty else { done([], ReplySlot()); return }
        if isClosed || failure != nil {
            let error = ReplyParts.errorReply("ERR tierproxy: client connection closed")
            done(commands.map { _ in error }, ReplySlot())
            return
        }
        var bytes = [UInt8]()
        for c in commands { RESPWriter.command(c, into: &bytes) }
        var collected: [[UInt8]] = []
        let last = commands.count - 1
        for i in 0...last {
            expectReply(handler: { [self] reply, slot in
                collected.append(reply)
                if i < last { fill(slot, []) } else { done(collected, slot) }
            })
        }
        sendProxyRequest(bytes, replies: commands.count)
    }

    /// The client's own transaction: inside it Redis queues commands, so the proxy tiers none.
    private func noticeTransaction(_ name: CommandName) {
        if name == Commands.multi { inTransaction = true }
        else if name == Commands.exec || name == Commands.discard || name == Commands.reset {
            if name == Commands.reset { tracking.reset() }
            inTransaction = false
            transactionWrites = []
            watchedKeys = []
        } else if name == Commands.unwatch {
            watchedKeys = []
        }
    }

    /// A tiered write queued in the client's own transaction: its keys are copied below once
    /// EXEC has run (see `TransactionSync`).
    private func noteTransactionWrite(_ frame: RequestFrame, at offset: Int) {
        switch tieredCommand(frame, at: offset) {
        case (.keyed(let plan), let args)?:
            transactionWrites += plan.written.map { TierKey(db: $0.db ?? db, args[$0.index]) }
        case (.blocking(let plan), let args)?:
            transactionWrites += plan.written.map { TierKey(db: $0.db ?? db, args[$0.index]) }
        default:
            break
        }
    }

    /// Notes that the next request sent owes a reply, and who takes it (nil: the client).
    private func expectReply(handler: ReplyHandler?) {
        if let handler { intercepts.append(Intercept(seq: requestsSent, handler: handler)) }
        requestsSent += 1
    }

    /// Notes that `frame` (forwarded as it is) owes a reply, and who reads it on the way back.
    /// A tiered GET only wants its reply if it is nil: it keeps its key, no closure.
    private func expectReply(for frame: RequestFrame, at offset: Int) {
        guard frame.name == Commands.get && frame.argc == 2 && worker.tierAccess != nil && !inTransaction else {
            expectReply(handler: replyHandler(for: frame, at: offset))
            return
        }
        let start = getKeys.count
        if let inline = frame.inlineArgs {
            getKeys.append(contentsOf: inline[1])
        } else {
            let span = worker.spans[frame.spanStart + 1]
            client.input.withSegments(offset: offset + span.offset, limit: span.count) { segment in
                getKeys.append(contentsOf: segment)
                return true
            }
        }
        intercepts.append(Intercept(seq: requestsSent, handler: nil, key: start..<getKeys.count))
        requestsSent += 1
    }

    /// Who takes `intercept`'s reply: its handler, or for a GET the read-through of its key.
    private func handler(for intercept: Intercept) -> ReplyHandler {
        if let h = intercept.handler { return h }
        let key = Array(getKeys[intercept.key])
        return { [unowned self] reply, slot in
            ReadThrough.get(TierKey(db: self.db, key), nullReply: reply, session: self, slot: slot)
        }
    }

    /// Moves past the head intercept (its reply has been taken).
    private func dropIntercept() {
        interceptHead += 1
        if interceptHead == intercepts.count {
            intercepts.removeAll(keepingCapacity: true)
            getKeys.removeAll(keepingCapacity: true)
            interceptHead = 0
        }
    }

    /// `SCRIPT LOAD body`: the body is remembered, so an EVALSHA of it is judged by its flags.
    private func noticeScriptLoad(_ frame: RequestFrame, at offset: Int) {
        guard let access = worker.tierAccess, frame.argc == 3, argument(frame, 1, at: offset).lowercased() == "load" else { return }
        access.core.scripts.loaded(argumentBytes(frame, 2, at: offset))
    }

    /// `FUNCTION LOAD | DELETE | FLUSH | RESTORE`: once it has answered, the functions' flags
    /// are read again from hot (`FunctionFlags`).
    private func noticeFunctionChange(_ frame: RequestFrame, at offset: Int) {
        guard sequenced, nextHandler == nil, let access = worker.tierAccess,
              FunctionFlags.isRefreshing(arguments(frame, at: offset)) else { return }
        let hot: HotClient = worker.hot
        nextHandler = { [unowned self] reply, slot in
            fill(slot, reply)
            if !ReplyParts.isError(reply) { FunctionFlags.refresh(hot: hot, scripts: access.core.scripts) }
        }
    }

    /// The few forwarded commands whose replies the proxy reads or amends.
    private func replyHandler(for frame: RequestFrame, at offset: Int) -> ReplyHandler? {
        let name = frame.name
        if let handler = nextHandler {
            nextHandler = nil
            nextHandlerLocks = []
            return handler
        }
        if name == Commands.exec && !transactionWrites.isEmpty, let access = worker.tierAccess {
            let keys = transactionWrites
            return { [unowned self] reply, slot in TransactionSync.run(keys, execReply: reply, access: access) { self.fill(slot, reply) } }
        }
        if worker.tierAccess != nil && !inTransaction && name == Commands.mget && frame.argc >= 2 {
            let keys = (1..<frame.argc).map { argumentBytes(frame, $0, at: offset) }
            return { [unowned self] reply, slot in
                ReadThrough.mget(keys, db: self.db, reply: reply, session: self, slot: slot)
            }
        }
        if name == Commands.info {
            let sections = (1..<max(frame.argc, 1)).map { argument(frame, $0, at: offset).lowercased() }
            return { [unowned self] reply, slot in self.fill(slot, TiersCommand.infoWithTiers(reply, sections: sections, worker: self.worker)) }
        }
        if name == Commands.select, frame.argc == 2, let n = Int(argument(frame, 1, at: offset)) {
            dbChangesInFlight += 1
            return { [unowned self] reply, slot in
                dbChangesInFlight -= 1
                if reply.starts(with: Array("+OK".utf8)) { self.db = n }
                self.fill(slot, reply)
            }
        }
        if name == Commands.reset {
            dbChangesInFlight += 1
            return { [unowned self] reply, slot in
                dbChangesInFlight -= 1
                if reply.starts(with: Array("+RESET".utf8)) { self.db = self.worker.config.upstream.db }
                self.fill(slot, reply)
            }
        }
        return nil
    }

    /// Gives this client an upstream connection of its own, for good.
    private func pin() {
        pinned = true
        Log.debug("Client pinned to its own upstream connection")
        let cfg = worker.config
        guard let address = worker.upstreamAddress else {
            dedicatedFailed("cannot resolve upstream \(cfg.upstream.host)")
            return
        }
        // The link sends the proxy's AUTH/SELECT first and holds the client's bytes until
        // Redis has accepted them.
        dedicated = UpstreamLink(worker: worker, address: address, delegate: self)
    }

    func connectionEstablished(_ connection: Connection) {}   // only outgoing connections call it

    /// Commands after which replies stop being one per request.
    private func notice(_ frame: RequestFrame, at offset: Int) {
        let name = frame.name
        if Commands.subscribeFamily.contains(name) {
            // Subscribing answers per channel (or with pushes), not once per request.
            sequenced = false
            subscribed = true
        } else if Commands.unsubscribeFamily.contains(name) {
            sequenced = false
        } else if name == Commands.monitor {
            sequenced = false
            monitoring = true
        } else if name == Commands.client, frame.argc >= 3 {
            switch argument(frame, 1, at: offset).lowercased() {
            case "reply": sequenced = false
            case "tracking": tracking.requested(mode: argument(frame, 2, at: offset))
            default: break
            }
        }
    }

    /// Every argument of `frame` (which starts `offset` bytes into the client input), whole.
    private func arguments(_ frame: RequestFrame, at offset: Int) -> [[UInt8]] {
        if let inline = frame.inlineArgs { return inline }
        return (0..<frame.argc).map { i in
            let span = worker.spans[frame.spanStart + i]
            return client.input.copy(span.count, offset: offset + span.offset)
        }
    }

    /// One argument of `frame` (which starts `offset` bytes into the client input), whole.
    private func argumentBytes(_ frame: RequestFrame, _ index: Int, at offset: Int) -> [UInt8] {
        if let inline = frame.inlineArgs { return inline[index] }
        let span = worker.spans[frame.spanStart + index]
        return client.input.copy(span.count, offset: offset + span.offset)
    }

    /// A small argument of `frame` (which starts `offset` bytes into the client input), as text.
    private func argument(_ frame: RequestFrame, _ index: Int, at offset: Int) -> String {
        if let inline = frame.inlineArgs {
            return index < inline.count ? String(decoding: inline[index], as: UTF8.self) : ""
        }
        let span = worker.spans[frame.spanStart + index]
        return String(decoding: client.input.copy(min(span.count, 64), offset: offset + span.offset), as: UTF8.self)
    }

    // MARK: - Replies through the shared connection (called by SharedUpstream)

    /// Reply bytes for this client, in order: a whole reply, or (`complete` false) the first part
    /// of one still arriving.
    /// `isNull`, for a complete reply: whether it is a nil (the scanner knows; saves a look at its bytes).
    func takeSharedReply(from buffer: Buffer, count: Int, complete: Bool, isNull: Bool? = nil) {
        if isClosed { takeReplyAfterClose(from: buffer, count: count, complete: complete) }
        else { takeReply(from: buffer, count: count, complete: complete, isNull: isNull) }
    }

    /// The client is gone, but a tiered command of its may still wait for replies (holding
    /// key locks, with a write to copy below): those still reach their handlers.
    private func takeReplyAfterClose(from buffer: Buffer, count: Int, complete: Bool) {
        guard interceptsPending && intercepts[interceptHead].seq == repliesTaken else {
            buffer.drain(count)
            if complete { repliesTaken += 1 }
            return
        }
        if let (bytes, handler) = captureIntercepted(from: buffer, count: count, complete: complete) {
            handler(bytes, ReplySlot())
        }
    }

    /// Collects an intercepted reply; once it is complete, returns it with its handler (and
    /// moves past that intercept).
    private func captureIntercepted(from buffer: Buffer, count: Int, complete: Bool) -> ([UInt8], ReplyHandler)? {
        let bytes: [UInt8]
        if complete && capture == nil {
            // The usual case, a whole reply at once: no buffer of its own.
            bytes = buffer.copy(count)
            buffer.drain(count)
        } else {
            let c = capture ?? Buffer.make()
            capture = c
            buffer.move(count, to: c)
            guard complete else { return nil }
            bytes = c.copy(c.count)
            c.free()
            capture = nil
        }
        let handler = handler(for: intercepts[interceptHead])
        dropIntercept()
        repliesTaken += 1
        return (bytes, handler)
    }

    /// Handlers still waiting when their replies can no longer come get an error instead, so
    /// that what they hold (key locks) is let go.
    @discardableResult
    private func failPendingIntercepts() -> Int {
        let pending = intercepts[interceptHead...].map(handler(for:))
        intercepts.removeAll()
        getKeys.removeAll()
        interceptHead = 0
        let error = ReplyParts.errorReply("ERR tierproxy: \(failure ?? "client connection closed")")
        for h in pending {
            let slot = ReplySlot()
            if !isClosed { held.append(.slot(slot)) }
            h(error, slot)
        }
        return pending.count
    }

    /// `count` whole replies were handed over by `takeSharedReply`.
    func sharedRepliesArrived(_ count: Int) {
        sharedOwed -= count
        if isClosed { return }
        client.flush()
        afterReplies()
    }

    /// The shared connection failed with `replies` of ours unanswered. This client holds no
    /// connection state, so it gets errors and carries on; the next request reconnects.
    func sharedFailed(replies: Int, reason: String, cutMidReply: Bool) {
        sharedOwed -= replies
        if isClosed {
            capture?.free()
            capture = nil
            failPendingIntercepts()
            return
        }
        if cutMidReply { close(); return }
        let error = Buffer.make()
        defer { error.free() }
        for _ in 0..<replies {
            error.append("-ERR tierproxy: \(reason)\r\n")
            takeReply(from: error, count: error.count, complete: true)
        }
        client.flush()
        afterReplies()
    }

    // MARK: - Where each reply goes

    /// Routes one reply (or its first part) from `buffer`: to the client's output, behind a slot
    /// still being filled, or to the handler that asked for it.
    private func takeReply(from buffer: Buffer, count: Int, complete: Bool, isNull: Bool? = nil) {
        if interceptsPending && intercepts[interceptHead].seq == repliesTaken && intercepts[interceptHead].handler == nil
            && capture == nil && !(isNull ?? mayBeNull(buffer, count: count, complete: complete)) {
            // A GET hit: it goes out as it came, with no copy.
            dropIntercept()
        }
        if interceptsPending && intercepts[interceptHead].seq == repliesTaken {
            guard let (bytes, handler) = captureIntercepted(from: buffer, count: count, complete: complete) else { return }
            let slot = ReplySlot()
            held.append(.slot(slot))
            handler(bytes, slot)
            return
        }
        if held.isEmpty {
            buffer.move(count, to: client.output)
        } else if case .bytes(let last)? = held.last {
            buffer.move(count, to: last)
        } else {
            let part = Buffer.make()
            buffer.move(count, to: part)
            held.append(.bytes(part))
        }
        if complete { repliesTaken += 1 }
    }

    /// False if the reply starting at `buffer`'s front surely is not a null (`$-1`, `*-1`, `_`):
    /// a complete reply is judged by its first bytes, a partial one by its size (nulls are short).
    private func mayBeNull(_ buffer: Buffer, count: Int, complete: Bool) -> Bool {
        if !complete { return count <= 5 }
        let head = buffer.pullup(min(count, 2))
        guard let t = head.first else { return false }
        if t == UInt8(ascii: "_") { return true }
        return (t == UInt8(ascii: "$") || t == UInt8(ascii: "*")) && head.count > 1 && head[1] == UInt8(ascii: "-")
    }

    /// A handler's reply is ready: it goes out in its place, with whatever waited behind it.
    func fill(_ slot: ReplySlot, _ reply: [UInt8]) {
        slot.reply = reply
        if isClosed { return }
        while let first = held.first {
            switch first {
            case .bytes(let b):
                b.moveAll(to: client.output)
                b.free()
            case .slot(let s):
                guard let r = s.reply else { worker.flushLater(self); afterReplies(); return }
                client.output.append(r)
            }
            held.removeFirst()
        }
        // Many slots are filled in one loop pass (a key-log group commit completes hundreds):
        // one write per client per pass, not one per reply.
        worker.flushLater(self)
        afterReplies()
    }

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

    // MARK: - Replies through the dedicated connection

    func linkReadable(_ link: UpstreamLink) { dedicatedReadable() }

    private func dedicatedReadable() {
        guard let up = dedicated else { return }
        let input = up.input
        if pipe.awaitingReplication && !input.isEmpty {
            pipe.awaitingReplication = false
            if PipeMode.startsStream(firstByte: input.copy(1)[0]) { enterPipe(replica: true) }
        }
        if pipe.on {
            appendUncounted(from: input, count: input.count)
            client.flush()
            afterReplies()
            holdUpstreamIfBehind(up)
            return
        }
        var counted = 0
        var base = 0
        var lastEnd = 0
        var status = ParseStatus.ok
        // Reply ends, kept only when replies must be routed one by one (a handler is waiting).
        let perReply = interceptsPending || !held.isEmpty || capture != nil
        var spans: [(end: Int, counts: Bool)] = []
        swap(&spans, &worker.replySpans)       // reuse the loop's array without a copy-on-write
        spans.removeAll(keepingCapacity: true)
        defer { swap(&spans, &worker.replySpans) }
        input.withSegments { segment in
            worker.replies.removeAll(keepingCapacity: true)
            status = scanner.feed(segment, replies: &worker.replies)
            for reply in worker.replies {
                lastEnd = base + reply.end
                if !reply.isPush { counted += 1 }
                if perReply { spans.append((lastEnd, !reply.isPush)) }
            }
            base += segment.count
            return status == .ok
        }
        let unframed = status != .ok
        if unframed && !PipeMode.canTakeOver(intercepts[interceptHead...], failedSeq: repliesTaken + counted, capturing: capture != nil) {
            Log.warning("Unparseable reply from upstream; closing the client")
            close()
            return
        }
        midReply = lastEnd != base
        if perReply {
            var consumed = 0
            for (end, counts) in spans {
                if counts { takeReply(from: input, count: end - consumed, complete: true) }
                else { appendUncounted(from: input, count: end - consumed) }
                consumed = end
                // A handler may answer at once and, say at shutdown, close this session (and
                // with it the buffer being read): stop here if so.
                if isClosed { return }
            }
            if unframed {
                // Redis's bytes from the one that does not frame on go out as they are.
                enterPipe(replica: false)
                appendUncounted(from: input, count: input.count)
            } else if !input.isEmpty { takeReply(from: input, count: input.count, complete: false) }
        } else {
            input.moveAll(to: client.output)
            repliesTaken += counted
            if unframed { enterPipe(replica: false) }
        }
        if sequenced { owed -= counted }
        client.flush()
        afterReplies()
        holdUpstreamIfBehind(up)
    }

    private func holdUpstreamIfBehind(_ up: UpstreamLink) {
        let limit = outputLimit
        if !isClosed && limit.hard == 0 && limit.soft == 0 && client.output.count > worker.config.proxyBufferHighWater {
            // No limit to enforce for this class (normal, by default): hold at most the high-water mark
            // here and stop reading Redis, which then buffers the rest under its own limits.
            up.isReading = false
            client.drainedAt = worker.config.proxyBufferHighWater / 2
            client.notifyWhenDrained = true
        }
    }

    /// From now on replies are not scanned (see `PipeMode`). Whatever the proxy still expected
    /// to read passes unread: only GET read-throughs can be left (`PipeMode.canTakeOver`).
    private func enterPipe(replica: Bool) {
        Log.debug(replica ? "Client became a replica link: passing its bytes through" : "Reply does not frame: passing the client's bytes through")
        if quitting && sequenced, let up = dedicated {
            // The proxy meant to answer QUIT after the replies owed, which it can no longer
            // count: Redis answers it instead, after them, and closes.
            up.output.append(PipeMode.quit)
            up.flush()
        }
        pipe.on = true
        pipe.replica = pipe.replica || replica
        sequenced = false
        owed = 0
        midReply = false
        intercepts.removeAll()
        getKeys.removeAll()
        interceptHead = 0
    }

    /// A push message: not a reply to anything, so it goes out in arrival order, never to a handler.
    private func appendUncounted(from buffer: Buffer, count: Int) {
        if held.isEmpty { buffer.move(count, to: client.output); return }
        let part = Buffer.make()
        buffer.move(count, to: part)
        held.append(.bytes(part))
    }

    /// Bookkeeping after replies reached the client's output, whichever way they came.
    private func afterReplies() {
        noteInteraction()
        if closeWhenComposed {
            if held.isEmpty { closeAfterFlush() }
            return
        }
        if quitting {
            if sequenced && allAnswered && !isClosed {
                client.output.append("+OK\r\n")
                closeAfterFlush()
            }
            return
        }
        if waitingToPin && sharedOwed == 0 {
            waitingToPin = false
            if shuttingDown { closeAfterFlush(); return }   // what waited was never sent
            pin()
            if isClosed { return }
            updateReading()
            clientReadable()          // re-parse from the request that asked to pin
            if isClosed { return }
        }
        if waitingForBarrier && allAnswered && !isClosed {
            waitingForBarrier = false
            resumeReading()
            if isClosed { return }
        }
        if let message = protocolErrorAfterOwed, allAnswered {
            protocolErrorAfterOwed = nil
            replyErrorAndClose(message)
            return
        }
        if shuttingDown && (allAnswered || !sequenced) { closeAfterFlush(); return }
        enforceOutputLimits()
        if reauthOwed != nil { EntraReauth.sendIfIdle(self) }
        if !isClosed && !pinned && client.output.count > worker.config.proxyBufferHighWater {
            // A shared client that does not read its replies: stop taking its requests.
            client.isReading = false
            client.drainedAt = worker.config.proxyBufferHighWater / 2
            client.notifyWhenDrained = true
        }
    }

    /// Pinned, on the proxy's user, and nothing between the client and Redis that an AUTH could
    /// disturb: no reply owed (so no blocking command waits), no transaction, no subscription,
    /// MONITOR or CLIENT REPLY mode, no handshake under way.
    var idleForReauth: Bool {
        guard pinned, let up = dedicated, !up.isHandshaking else { return false }
        return sequenced && !inTransaction && !ownUser && allAnswered && !keyedOpRunning && failure == nil
            && !quitting && !shuttingDown && !pipe.on && !waitingToPin && !waitingForBarrier && !isClosed
    }

    private func noteInteraction() {
        // Only with `timeout` set: the loop's clock is cheap, not free.
        if worker.config.timeoutSeconds > 0 { lastInteraction = worker.loop.nowMillis }
    }

    /// Since when the client has been idle, if `timeout` applies to it: as in Redis, not to
    /// subscribers, MONITOR or replica links, nor to a client waiting for a reply (a blocking
    /// command, a tiered one). A client that once subscribed stays spared: its replies are
    /// not counted, so the proxy cannot tell when it has left its last channel.
    var idleSince: Int64? {
        guard !isClosed && !subscribed && !monitoring && !pipe.replica && allAnswered
                && !keyedOpRunning && !waitingToPin && !waitingForBarrier else { return nil }
        return lastInteraction
    }

    /// The client's output-buffer class, as Redis classifies it.
    private var outputLimit: OutputLimit {
        pipe.outputLimit(subscribed ? worker.config.outputLimitPubsub : worker.config.outputLimitNormal)
    }

    /// Limits are enforced on what the proxy holds for the client, as Redis does on its buffer.
    private func enforceOutputLimits() {
        let limit = outputLimit
        let pending = client.output.count
        if limit.hard > 0 && pending >= limit.hard {
            Log.warning("Client closed for overcoming of output buffer limits (\(pending) bytes)")
            close()
            return
        }
        if limit.soft > 0 && pending >= limit.soft {
            let now = worker.loop.nowMillis
            if softLimitSince == 0 { softLimitSince = now }
            else if now - softLimitSince > Int64(limit.softSeconds) * 1000 {
                Log.warning("Client closed for overcoming of output buffer soft limit (\(pending) bytes)")
                close()
            }
        } else {
            softLimitSince = 0
        }
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

    // MARK: - Failures and closing

    func connectionClosed(_ connection: Connection, error: String?) {
        // As Redis logs a failed TLS accept (plain text on the TLS port, no client certificate).
        if let error { Log.verbose(connection.isEstablished ? "Client closed: \(error)" : "Error accepting a client connection: \(error)") }
        // The client left (possibly mid-pipeline): release the upstream and every buffer now.
        close()
    }

    func linkFailed(_ link: UpstreamLink, reason: String) { dedicatedFailed(reason) }

    /// The dedicated upstream is gone, and the connection state with it. Requests still owed a
    /// reply get an error (unless a reply was cut in half); then the client is closed.
    private func dedicatedFailed(_ reason: String) {
        guard failure == nil, !isClosed else { return }
        failure = reason
        let wasConnected = dedicated?.connected ?? false
        if let up = dedicated {
            // Whatever the upstream sent before closing (QUIT's +OK, a last reply) still goes out.
            if !up.isHandshaking && !up.input.isEmpty { dedicatedReadable() }
            up.close()
        }
        dedicated = nil
        if isClosed { return }
        Log.verbose("Client failed: \(reason)")
        if interceptsPending && !midReply && capture == nil {
            // Replies the proxy's own requests still wait for will not come: their handlers
            // get an error now and finish (a tiered command answers with what Redis did say,
            // e.g. the protocol error before it closed), so their slots can go out.
            owed -= failPendingIntercepts()
            if isClosed { return }
        }
        // A reply cut in half, or replies the proxy still has to compose, cannot be followed
        // by sensible error replies: close. Except after QUIT (or malformed bytes Redis was
        // given to judge): Redis closed on purpose with every reply it owed delivered, and only
        // the proxy's own replies are still being composed; finish those, then close.
        if quitting && !midReply && !interceptsPending && capture == nil && !held.isEmpty {
            closeWhenComposed = true
            return
        }
        if midReply || !held.isEmpty || interceptsPending || capture != nil { close(); return }
        let unanswered = sequenced ? owed : 0
        owed = 0
        if unanswered > 0 || protocolErrorAfterOwed != nil || !client.output.isEmpty {
            // A connection Redis had accepted and then closed (CLIENT KILL, timeout, Redis
            // going away) answers nothing more: a direct client sees the close, so does this one.
            if !wasConnected { for _ in 0..<unanswered { writeError(failureMessage) } }
            if let m = protocolErrorAfterOwed { client.output.append(m) }
            protocolErrorAfterOwed = nil
            closeAfterFlush()
        } else if shuttingDown || wasConnected || quitting {
            close()
        } else {
            // Nothing was owed yet: wait briefly for a request so that it gets an error reply
            // rather than a bare close.
            lingerTimer = Timer(loop: worker.loop, millis: worker.config.upstreamConnectTimeoutMillis) { [unowned self] in
                self.close()
            }
        }
    }

    private var failureMessage: String { "ERR tierproxy: \(failure ?? "upstream unavailable")" }

    private func answerWithFailure(count: Int) {
        for _ in 0..<count { writeError(failureMessage) }
        closeAfterFlush()
    }

    private func writeError(_ message: String) {
        client.output.append("-")
        client.output.append(message)
        client.output.append("\r\n")
    }

    private func replyErrorAndClose(_ reply: [UInt8]) {
        client.output.append(reply)
        closeAfterFlush()
    }

    private func closeAfterFlush() {
        guard !isClosed else { return }
        if client.flush() { close(); return }
        closeWhenFlushed = true
        client.isReading = false
        client.drainedAt = 0
        client.notifyWhenDrained = true
    }

    /// Shutdown: read nothing more; close once every reply already requested has been written.
    func beginShutdown() {
        shuttingDown = true
        client.isReading = false
        if allAnswered || !sequenced || failure != nil { closeAfterFlush() }
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        lingerTimer?.cancel()
        lingerTimer = nil
        dedicated?.close()
        dedicated = nil
        for part in held { if case .bytes(let b) = part { b.free() } }
        held.removeAll()
        client.close()
        worker.sessionClosed(self)
        // Replies still owed on the shared connection will reach their handlers; those owed
        // on the dedicated one never will.
        if pinned || sharedOwed == 0 {
            capture?.free()
            capture = nil
            failPendingIntercepts()
        }
    }
}

/// A reply the proxy will compose, holding its place in the client's reply order.
final class ReplySlot {
    var reply: [UInt8]?
}

/// Takes an intercepted reply's bytes and fills the slot (now or later, on this loop).
typealias ReplyHandler = (_ reply: [UInt8], _ slot: ReplySlot) -> Void

struct Intercept {
    let seq: Int
    /// Takes the reply. nil for a tiered GET: only a nil reply is read (by `ReadThrough.get`,
    /// with the key at `key` in the session's `getKeys`); any other passes straight on.
    let handler: ReplyHandler?
    var key: Range<Int> = 0..<0
}

enum HeldPart {
    case bytes(Buffer)
    case slot(ReplySlot)
}

private func firstLine(_ s: String) -> String {
    var line = s
    if line.hasPrefix("-") { line.removeFirst() }
    if let r = line.firstIndex(where: { $0 == "\r" || $0 == "\n" }) { line = String(line[..<r]) }
    return line
}
