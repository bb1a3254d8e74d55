import RESP
import Tiers
import Reactor

/// Replies, upstream → client: from the shared connection (handed over by `SharedUpstream`) and
/// from the client's own, in request order through the `ReplySequencer`, and what follows
/// once replies are out (`afterReplies`).
extension ClientSession {
    /// Hands an intercepted reply to whoever asked for it.
    func run(_ taker: ReplyTaker, _ reply: [UInt8], _ slot: ReplySlot) {
        switch taker {
        case .handler(let handler): handler(reply, slot)
        case .readThrough(let key):
            ReadThrough.get(TierKey(db: db, key), nullReply: reply, session: self, access: worker.tierAccess!, slot: slot)
        }
    }

    /// Reply bytes for this client, in order: a whole reply, or (`complete` false) the first part
    /// of one still arriving.
    /// `isNull`, for a complete reply: whether it is a nil (the scanner knows; saves a look at its bytes).
    func takeSharedReply(from buffer: Buffer, count: Int, complete: Bool, isNull: Bool? = nil) {
        if isClosed { takeReplyAfterClose(from: buffer, count: count, complete: complete) }
        else { takeReply(from: buffer, count: count, complete: complete, isNull: isNull) }
    }

    /// The client is gone, but a tiered command of its may still wait for replies (holding
    /// key locks, with a write to copy below): those still reach their handlers.
    func takeReplyAfterClose(from buffer: Buffer, count: Int, complete: Bool) {
        if let (bytes, taker) = sequencer.takeAfterClose(from: buffer, count: count, complete: complete) {
            run(taker, bytes, ReplySlot())
        }
    }

    /// Handlers still waiting when their replies can no longer come get an error instead, so
    /// that what they hold (key locks) is let go.
    @discardableResult
    func failPendingIntercepts() -> Int {
        let pending = sequencer.failPending(inOrder: !isClosed)
        let error = ReplyParts.errorReply("ERR tierproxy: \(failure ?? "client connection closed")")
        for (taker, slot) in pending { run(taker, error, slot) }
        return pending.count
    }

    /// `count` whole replies were handed over by `takeSharedReply`.
    func sharedRepliesArrived(_ count: Int) {
        sharedOwed -= count
        if isClosed { return }
        client.flush()
        afterReplies()
    }

    /// Routes one reply (or its first part) from `buffer`: to the client's output, behind a slot
    /// still being filled, or to the handler that asked for it.
    func takeReply(from buffer: Buffer, count: Int, complete: Bool, isNull: Bool? = nil) {
        if let (bytes, taker, slot) = sequencer.take(from: buffer, count: count, complete: complete, isNull: isNull, to: client.output) {
            run(taker, bytes, slot)
        }
    }

    /// A handler's reply is ready: it goes out in its place, with whatever waited behind it.
    func fill(_ slot: ReplySlot, _ reply: [UInt8]) {
        slot.reply = reply
        if isClosed { return }
        sequencer.release(into: client.output)
        // Many slots are filled in one loop pass (a key-log group commit completes hundreds):
        // one write per client per pass, not one per reply.
        worker.flushLater(self)
        afterReplies()
    }

    func linkReadable(_ link: UpstreamLink) { dedicatedReadable() }

    func dedicatedReadable() {
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
        // Replies are routed one by one only when they must be (a handler waits, output is held).
        let perReply = sequencer.routesEachReply
        var ends: [ReplyEnd] = []
        swap(&ends, &worker.replyEnds)       // reuse the loop's array without a copy-on-write
        ends.removeAll(keepingCapacity: true)
        defer { swap(&ends, &worker.replyEnds) }
        let (status, fed) = framer.scan({ input.withSegments($0) }, into: &ends, keepPushes: true)
        var counted = 0
        for e in ends where !e.isPush { counted += 1 }
        let unframed = status != .ok
        if unframed && !sequencer.pipeCanTakeOver(after: counted) {
            Log.warning("Unparseable reply from upstream; closing the client")
            close()
            return
        }
        midReply = (ends.last?.end ?? 0) != fed
        if perReply {
            var consumed = 0
            for e in ends {
                if e.isPush { appendUncounted(from: input, count: e.end - consumed) }
                else { takeReply(from: input, count: e.end - consumed, complete: true) }
                consumed = e.end
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
            sequencer.passed(counted)
            if unframed { enterPipe(replica: false) }
        }
        if sequenced { owed -= counted }
        client.flush()
        afterReplies()
        holdUpstreamIfBehind(up)
    }

    func holdUpstreamIfBehind(_ up: UpstreamLink) {
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
    func enterPipe(replica: Bool) {
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
        sequencer.dropIntercepts()
    }

    /// A push message: not a reply to anything, so it goes out in arrival order, never to a handler.
    func appendUncounted(from buffer: Buffer, count: Int) {
        sequencer.takeUncounted(from: buffer, count: count, to: client.output)
    }

    /// Bookkeeping after replies reached the client's output, whichever way they came.
    func afterReplies() {
        noteInteraction()
        if closeWhenComposed {
            if !sequencer.isHolding { closeAfterFlush() }
            return
        }
        if quitting {
            if sequenced && allAnswered && !isClosed {
                client.output.append("+OK\r\n")
                closeAfterFlush()
            }
            return
        }
        if phase == .waitingToPin && sharedOwed == 0 {
            phase = .reading
            if shuttingDown { closeAfterFlush(); return }   // what waited was never sent
            pin()
            if isClosed { return }
            updateReading()
            clientReadable()          // re-parse from the request that asked to pin
            if isClosed { return }
        }
        if phase == .waitingForEarlierReplies && allAnswered && !isClosed {
            phase = .reading
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
            client.drainedAt = worker.config.proxyBufferHighWater / 2
            client.notifyWhenDrained = true
            updateReading()
        }
    }
}
