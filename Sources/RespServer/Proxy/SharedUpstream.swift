import RESP
import Reactor

/// One upstream connection per loop that carries the requests of every client still in shared
/// mode (clients that have not touched connection state), pipelined, the way twemproxy does.
/// Redis answers in order, so a FIFO of (session, replies owed) tells whose each reply is.
/// A session that needs connection state moves to its own connection (`ClientSession.pin`).
final class SharedUpstream: UpstreamLinkDelegate {
    private unowned(unsafe) let worker: Worker
    private var link: UpstreamLink?
    private var framer = ReplyFramer()
    /// Whose replies come next: sessions in the order their requests were written; nil for the
    /// proxy's own requests (a re-AUTH), whose replies no client sees.
    private var queue: [(session: ClientSession?, owed: Int)] = []
    private var head = 0
    /// Sessions paused because this connection's output was over the high-water mark.
    private var waiting: [ClientSession] = []
    /// The head session has been handed the first part of a reply that is still arriving.
    private var headMidReply = false
    /// One write per loop pass carries every client's requests that arrived in that pass.
    private var flushTask: DeferredTask!
    /// The start of the reply to the proxy's own request, still arriving.
    private var ownPartial: [UInt8] = []
    /// A link has been opened before: the next one is a reconnect.
    private var everLinked = false

    init(worker: Worker) {
        self.worker = worker
        flushTask = DeferredTask(loop: worker.loop) { [unowned self] in self.flushNow() }
    }

    /// Moves `bytes` of `session`'s input (complete requests owing `replies` replies) to Redis.
    /// Returns false if the connection is over its high-water mark (the caller pauses reading).
    func send(from session: ClientSession, bytes: Int, replies: Int) -> Bool {
        guard let up = linkOrFail(session, replies: replies) else {
            session.client.input.drain(bytes)
            return true
        }
        session.client.input.move(bytes, to: up.output)
        return enqueue(session, replies: replies, on: up)
    }

    /// Sends a request the proxy composed for `session` (owing `replies` replies).
    func send(from session: ClientSession, payload: [UInt8], replies: Int) -> Bool {
        guard let up = linkOrFail(session, replies: replies) else { return true }
        up.output.append(payload)
        return enqueue(session, replies: replies, on: up)
    }

    /// The open link, or a new one; nil (the session's replies answered with an error) when the
    /// upstream's address could not be resolved.
    private func linkOrFail(_ session: ClientSession, replies: Int) -> UpstreamLink? {
        if let up = link { return up }
        guard let address = worker.upstreamAddress else {
            session.sharedFailed(replies: replies, reason: "cannot resolve upstream \(worker.config.upstream.host)",
                                 cutMidReply: false)
            return nil
        }
        framer = ReplyFramer()
        if everLinked { worker.metrics.add(.upstreamReconnects) }
        everLinked = true
        let up = UpstreamLink(worker: worker, address: address, delegate: self)
        link = up
        return up
    }

    /// Re-authenticates the open connection (if any) with `auth`, in its place among the clients'
    /// requests; the reply is read here and never reaches a client.
    func reauthenticate(_ auth: [[UInt8]]) {
        guard let up = link else { return }
        up.output.append(ReplyParts.command(auth))
        queue.append((nil, 1))
        flushTask.schedule()
    }

    private func enqueue(_ session: ClientSession, replies: Int, on up: UpstreamLink) -> Bool {
        worker.metrics.add(.sharedRequests, replies)
        if head < queue.count, queue[queue.count - 1].session === session {
            queue[queue.count - 1].owed += replies
        } else {
            queue.append((session, replies))
        }
        flushTask.schedule()
        if up.output.count > worker.config.proxyBufferHighWater {
            waiting.append(session)
            return false
        }
        return true
    }

    private func flushNow() {
        guard let up = link else { return }
        if !up.flush() && !waiting.isEmpty {
            up.drainedAt = worker.config.proxyBufferHighWater / 2
            up.notifyWhenDrained = true
        } else if !waiting.isEmpty {
            linkDrained(up)
        }
    }

    func linkDrained(_ link: UpstreamLink) {
        link.notifyWhenDrained = false
        let resumed = waiting
        waiting.removeAll()
        for s in resumed where !s.isClosed { s.sharedOutputDrained() }
    }

    func linkFailed(_ link: UpstreamLink, reason: String) { failed(reason) }

    /// Hands each complete reply to the session at the head of the queue. Bytes of a reply still
    /// arriving go to that same session at once, so a large value streams through.
    func linkReadable(_ link: UpstreamLink) {
        let input = link.input
        var ends: [ReplyEnd] = []              // with which are nil (read-through wants those)
        swap(&ends, &worker.replyEnds)        // reuse the loop's array without a copy-on-write
        ends.removeAll(keepingCapacity: true)
        defer { swap(&ends, &worker.replyEnds) }
        let (status, _) = framer.scan({ input.withSegments($0) }, into: &ends)
        if status != .ok {
            Log.warning("Unparseable reply on the shared upstream connection; resetting it")
            failed("unparseable reply from upstream")
            return
        }
        var consumed = 0
        var touched: ClientSession? = nil
        var touchedReplies = 0
        for reply in ends {
            let end = reply.end
            guard head < queue.count else {
                Log.warning("Reply with no request waiting on the shared upstream connection; resetting it")
                failed("reply with no request")
                return
            }
            guard let session = queue[head].session else {
                EntraReauth.checkReply(ownPartial + input.copy(min(end - consumed, 512)), on: "the shared upstream connection")
                ownPartial = []
                input.drain(end - consumed)
                consumed = end
                queue[head].owed -= 1
                if queue[head].owed == 0 { head += 1 }
                continue
            }
            SharedUpstream.turn(to: session, &touched, &touchedReplies)
            session.takeSharedReply(from: input, count: end - consumed, complete: true, isNull: reply.isNull)
            headMidReply = false
            consumed = end
            touchedReplies += 1
            queue[head].owed -= 1
            if queue[head].owed == 0 { head += 1 }
        }
        passPartialReply(input, &touched, &touchedReplies)
        if let t = touched { t.sharedRepliesArrived(touchedReplies) }
        compactQueue()
    }

    /// The start of a reply still arriving belongs to the head session (or to the proxy's own
    /// request at the head, which keeps a little of it to read when it ends).
    private func passPartialReply(_ input: Buffer, _ touched: inout ClientSession?, _ touchedReplies: inout Int) {
        let rest = input.count
        guard rest > 0 && head < queue.count else { return }
        guard let session = queue[head].session else {
            // The scanner has seen these bytes: they leave the input like a client's would.
            ownPartial += input.copy(min(rest, 512))
            input.drain(rest)
            return
        }
        SharedUpstream.turn(to: session, &touched, &touchedReplies)
        session.takeSharedReply(from: input, count: rest, complete: false)
        headMidReply = true
    }

    /// Replies now go to `session`: the one they went to before hears how many it got.
    private static func turn(to session: ClientSession, _ touched: inout ClientSession?, _ touchedReplies: inout Int) {
        guard touched !== session else { return }
        if let t = touched { t.sharedRepliesArrived(touchedReplies) }
        touched = session
        touchedReplies = 0
    }

    private func compactQueue() {
        if head == queue.count { queue.removeAll(keepingCapacity: true); head = 0 }
        else if head > 64 && head * 2 > queue.count { queue.removeFirst(head); head = 0 }
    }

    /// The connection is gone: every request still waiting gets an error reply; the sessions
    /// themselves keep going (they hold no connection state) and the next request reconnects.
    private func failed(_ reason: String) {
        let c = link
        link = nil
        let pending = Array(queue[head...])
        let streaming = headMidReply
        headMidReply = false
        ownPartial = []
        queue.removeAll()
        head = 0
        c?.close()
        Log.verbose("Shared upstream connection failed: \(reason)")
        for (i, entry) in pending.enumerated() {
            guard let session = entry.session, !session.isClosed else { continue }
            session.sharedFailed(replies: entry.owed, reason: reason, cutMidReply: i == 0 && streaming)
        }
        let resumed = waiting
        waiting.removeAll()
        for s in resumed where !s.isClosed { s.sharedOutputDrained() }
    }

    func close() {
        link?.close()
        link = nil
    }
}
