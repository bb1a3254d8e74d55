import RESP
import Tiers
import Reactor

/// Requests, client → upstream: each is routed (`RequestRouter`), then forwarded on the shared
/// or the client's own connection, answered in place, or handed to the tiering code.
extension ClientSession {
    /// Sends complete requests on their way, in order, each as `RequestRouter` decides. Returns
    /// true if every frame was dispatched, false if it stopped at one that must wait (to pin, for
    /// earlier replies, behind a tiered command) or ends the stream (QUIT): what follows that
    /// request stays in the input, and the parser starts again there when reading resumes.
    func dispatch(_ frames: [RequestFrame]) -> Bool {
        if failure != nil { answerWithFailure(frames); return true }
        let input = client.input
        var batch = ForwardBatch()
        // A command waiting in a batch its key's next writes may join (`joinBatch`).
        var gathering: KeyedOp?
        for frame in frames {
            if let previous = gathering {
                guard let op = joinBatch(frame, after: previous) else { return false }
                input.drain(frame.length)
                gathering = op
                continue
            }
            let (facts, tiered, exec, gateBytes) = self.facts(for: frame, at: batch.bytes)
            guard let action = route(facts, frame, &batch) else { return false }
            switch action {
            case .dropEmpty:
                input.drain(frame.length)
            case .passEmpty:
                batch.bytes += frame.length
            case .quit:
                stopAtQuit()
                return false
            case .rewrite:
                replaceWithRewrite(frame, gateBytes ?? [])
                return false
            case .answer(let endsTransaction):
                if !answerInPlace(frame, gateBytes ?? [], endsTransaction: endsTransaction) { return waitForEarlierReplies() }
            case .answerTiers:
                answerTiers(frame)
            case .waitBehindFolds, .waitForBarrier, .waitBeforeReplication:
                return waitForEarlierReplies()
            case .forwardShared:
                if sequenced { expectReply(for: frame, at: batch.bytes) }
                batch.bytes += frame.length
                batch.replies += 1
            case .waitToPin:
                waitToPin(frame)
                return false
            case .pin:
                preconditionFailure("a pinned session is never routed to pin")
            case .runTiered:
                input.drain(frame.length)
                gathering = startTiered(tiered!.0, tiered!.1)
                if gathering == nil { return false }
            case .runExec:
                runExec(frame, exec!)
                return false
            case .forward(let reauthenticate, let replication):
                forwardOnOwnConnection(frame, &batch)
                if reauthenticate { send(&batch); reauthenticateUpstream() }
                if replication { send(&batch); return awaitReplication() }
            }
        }
        if gathering != nil { return false }
        send(&batch)
        return true
    }

    /// `RequestRouter`'s action for a request, once what must go before it has gone: the batch
    /// so far if the request does not join it, and the session's pin if it must pin. nil if
    /// pinning closed the session.
    @inline(__always)
    private func route(_ facts: RequestFacts, _ frame: RequestFrame, _ batch: inout ForwardBatch) -> RequestAction? {
        var action = RequestRouter.route(facts, in: mode(batch))
        if !action.joinsBatch && batch.bytes > 0 {
            // Whatever this request does, what came before it goes first. Route it again on
            // the state that sending left (an upstream that cannot be resolved answers at once).
            send(&batch)
            action = RequestRouter.route(facts, in: mode(batch))
        }
        if action.headsUpstream { noteSent(frame, at: batch.bytes) }
        if case .pin = action {
            pin()
            if isClosed { abandonNextHandler(); return nil }
            action = RequestRouter.route(facts, in: mode(batch))
        }
        return action
    }

    /// A request the gate rewrote: sent as the client's own bytes, so parsed again from here.
    private func replaceWithRewrite(_ frame: RequestFrame, _ bytes: [UInt8]) {
        client.input.drain(frame.length)
        client.input.prepend(bytes)
        parser.reset()
        reparse = true
    }

    /// TIERS (at the input's front): answered by the proxy, in its place among the replies.
    func answerTiers(_ frame: RequestFrame) {
        let args = arguments(frame, at: 0)
        client.input.drain(frame.length)
        let plan = TiersCommand.plan(args, session: self)
        expectReply(handler: plan.handler)
        sendProxyRequest(plan.upstreamCommand)
    }

    /// SYNC/PSYNC was sent: the answer's first byte decides whether a pipe follows, so nothing
    /// more is parsed until it has come (`dedicatedReadable`).
    func awaitReplication() -> Bool {
        pipe.awaitingReplication = true
        return waitForEarlierReplies()
    }

    /// QUIT: Redis answers +OK and closes, ignoring what follows; so does the proxy, in order.
    func stopAtQuit() {
        quitting = true
        updateReading()
        client.input.drain(client.input.count)
        parser.reset()
        afterReplies()
    }

    /// Pins only once every shared reply is in; `frame` is parsed again from its first byte then.
    func waitToPin(_ frame: RequestFrame) {
        phase = .waitingToPin
        updateReading()
        parser.reset()
        abandonNextHandler()   // the request is dispatched again after the pin
        Log.debug("Client waits for \(sharedOwed) shared replies before pinning (\(frame.name))")
    }

    /// The session's mode as the router sees it, with `batch` (not sent yet) counted as sent.
    func mode(_ batch: ForwardBatch) -> SessionMode {
        SessionMode(sequenced: sequenced, pinned: pinned, sharedInFlight: sharedOwed + batch.replies,
                    allAnswered: allAnswered && batch.replies == 0, foldsInDoubt: foldsInDoubt > 0)
    }

    /// What the router weighs about `frame` (at `offset` in the input), with its tiered route,
    /// its transaction capture and the auth gate's bytes when it has them. The ways that let a tiered command travel
    /// as it is are tried here (a blind write pipelined, a blocking command with nothing to
    /// bring up); each leaves its reply's handler in `nextHandler`.
    func facts(for frame: RequestFrame, at offset: Int) -> (RequestFacts, (TieredCommand.Route, [[UInt8]])?, ExecCapture?, gateBytes: [UInt8]?) {
        var f = RequestFacts()
        if frame.isEmpty { f.isEmpty = true; return (f, nil, nil, nil) }
        f.isQuit = frame.name == Commands.quit
        if f.isQuit && sequenced { return (f, nil, nil, nil) }
        if let gate = worker.proxyAuth {
            switch gate.judge(frame, &auth, inTransaction: inTransaction, args: { arguments(frame, at: offset) }) {
            case .pass: break
            case .reset: f.gate = .reset
            case .rewrite(let bytes):
                f.gate = .rewrite
                return (f, nil, nil, bytes)
            case .answer(let reply, let endsTransaction):
                f.gate = .answer(endsTransaction: endsTransaction)
                return (f, nil, nil, reply)
            }
        }
        f.isTiers = frame.name == Commands.tiers
        if f.isTiers && sequenced { return (f, nil, nil, nil) }
        f.mayShare = !pinned && worker.canShare(frame)
        f.startsReplication = PipeMode.startsReplication(frame.name)
        var tiered = tieredRoute(frame, at: offset)
        f.takesKeyLocks = takesKeyLocks(tiered?.0)
        // Only routes that take key locks have fast ways, and only those pass folds in doubt.
        if foldsInDoubt > 0 && !f.takesKeyLocks { return (f, nil, nil, nil) }
        if let t = tiered, travelsAsItIs(t, shared: f.mayShare) { tiered = nil }
        if let (route, _) = tiered { f.tiered = .run(mayOverlap: mayOverlap(route)) }
        var exec: ExecCapture?
        if inTransaction && frame.name == Commands.exec, let access = worker.tierAccess {
            exec = ExecCapture(writes: transactionWrites, db: db, core: access.core)
            f.capturesExec = exec != nil
        }
        return (f, tiered, exec, nil)
    }

    /// A request forwarded as it is on the client's own connection (sequenced or not).
    func forwardOnOwnConnection(_ frame: RequestFrame, _ batch: inout ForwardBatch) {
        if inTransaction { noteTransactionWrite(frame, at: batch.bytes) }
        if sequenced { expectReply(for: frame, at: batch.bytes) }
        notice(frame, at: batch.bytes)
        noticeTransaction(frame.name)
        if sequenced { owed += 1 }
        batch.bytes += frame.length
    }

    /// A failed session's requests each get the failure as their reply, then it closes.
    func answerWithFailure(_ frames: [RequestFrame]) {
        var consumed = 0, answered = 0
        for frame in frames {
            consumed += frame.length
            if !frame.isEmpty { answered += 1 }
        }
        client.input.drain(consumed)
        if answered > 0 { answerWithFailure(count: answered) }
    }

    /// auth-mode proxy: answers `frame` (at the input's front) itself, after every earlier reply;
    /// false if those are still owed (it is parsed again once they are out).
    func answerInPlace(_ frame: RequestFrame, _ reply: [UInt8], endsTransaction: Bool) -> Bool {
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
    func reauthenticateUpstream() {
        guard case .success(let handshake)? = worker.credential.shared.handshake(), handshake.replies > 0 else { return }
        for _ in 0..<handshake.replies { expectReply(handler: { [unowned self] _, slot in fill(slot, []) }) }
        sendProxyRequest(handshake.bytes, replies: handshake.replies)
    }

    /// Stops at the request being dispatched until every earlier reply is out; it is parsed
    /// again then (`afterReplies`). Returns false, as `dispatch` does when it stops early.
    func waitForEarlierReplies() -> Bool {
        phase = .waitingForEarlierReplies
        updateReading()
        parser.reset()
        return false
    }

    /// Moves the batch's bytes from the client's input to the route they belong to.
    func send(_ batch: inout ForwardBatch) {
        guard batch.bytes > 0 else { return }
        defer { batch = ForwardBatch() }
        if !pinned {
            sharedOwed += batch.replies
            if !worker.shared.send(from: self, bytes: batch.bytes, replies: batch.replies) { pauseForSharedLink() }
            return
        }
        guard let up = dedicated else { return }
        client.input.move(batch.bytes, to: up.output)
        if !up.flush() && up.output.count > worker.config.proxyBufferHighWater {
            // Redis is behind: stop reading this client until the upstream socket drains.
            up.drainedAt = worker.config.proxyBufferHighWater / 2
            up.notifyWhenDrained = true
            updateReading()
        }
    }

    /// Sends a request the proxy composed (in place of the client's), on the client's route.
    func sendProxyRequest(_ bytes: [UInt8], replies: Int = 1) {
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

    /// Notes that the next request sent owes a reply, and who takes it (nil: the client).
    func expectReply(handler: ReplyHandler?) { sequencer.expect(handler) }

    /// Notes that `frame` (forwarded as it is) owes a reply, and who reads it on the way back.
    /// A tiered GET only wants its reply if it is nil: the sequencer keeps its key, no closure.
    func expectReply(for frame: RequestFrame, at offset: Int) {
        guard frame.name == Commands.get && frame.argc == 2 && worker.tierAccess != nil && !inTransaction else {
            sequencer.expect(replyHandler(for: frame, at: offset))
            return
        }
        sequencer.expectGet { keys in
            if let inline = frame.inlineArgs {
                keys.append(contentsOf: inline[1])
            } else {
                let span = worker.spans[frame.spanStart + 1]
                client.input.withSegments(offset: offset + span.offset, limit: span.count) { segment in
                    keys.append(contentsOf: segment)
                    return true
                }
            }
        }
    }

    /// The few forwarded commands whose replies the proxy reads or amends.
    func replyHandler(for frame: RequestFrame, at offset: Int) -> ReplyHandler? {
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
        if let access = worker.tierAccess, !inTransaction && name == Commands.mget && frame.argc >= 2 {
            let keys = (1..<frame.argc).map { argumentBytes(frame, $0, at: offset) }
            return { [unowned self] reply, slot in
                ReadThrough.mget(keys, db: self.db, reply: reply, session: self, access: access, slot: slot)
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
    func pin() {
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

}

/// Requests at the front of the client's input that go out together: their bytes, and the
/// replies they owe on the shared connection.
struct ForwardBatch {
    var bytes = 0
    var replies = 0
}
