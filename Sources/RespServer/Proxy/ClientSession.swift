import RESP
import Reactor

/// One client connection and the upstream connection that serves it. Requests are parsed only to
/// find their ends (and the few commands the proxy must notice); request and reply bytes move
/// between the two sockets' buffers without being copied or re-encoded. Redis answers one
/// connection in order, so pass-through replies are in order by construction; the count of
/// replies still owed (`owed`) is what shutdown, errors and (later) tier slots rely on.
final class ClientSession: ConnectionDelegate {
    unowned let worker: Worker
    let client: Connection
    private(set) var upstream: Connection?

    private var parser: RequestParser
    private var scanner = ReplyScanner()
    /// Replies the upstream still owes this client, in sequenced mode.
    private(set) var owed = 0
    /// Replies to the proxy's own AUTH/SELECT, swallowed before any reply reaches the client.
    private var handshakeOwed = 0
    /// False once the client entered a mode where replies are not one per request
    /// (SUBSCRIBE family, MONITOR, CLIENT REPLY): then bytes stream through uncounted.
    private(set) var sequenced = true
    /// Subscribed clients are in the pubsub output-buffer class.
    private var subscribed = false
    /// The upstream reply stream ended mid-reply; an error reply appended now would corrupt it.
    private var midReply = false
    /// Set when the upstream is gone: every request from now on is answered with this error.
    private var failure: String?
    private var protocolErrorAfterOwed: String?
    private var closeWhenFlushed = false
    private var shuttingDown = false
    private var connectTimer: Timer?
    private var lingerTimer: Timer?
    private var softLimitSince: Int64 = 0
    private(set) var isClosed = false

    init(worker: Worker, fd: Int32) {
        self.worker = worker
        self.client = Connection(loop: worker.loop, fd: fd)
        self.parser = RequestParser(maxBulkLength: worker.config.protoMaxBulkLen)
        client.delegate = self
        openUpstream()
    }

    // MARK: - Upstream life

    private func openUpstream() {
        let cfg = worker.config
        guard let address = worker.upstreamAddress else {
            upstreamFailed("cannot resolve upstream \(cfg.upstream.host)")
            return
        }
        let up = Connection(loop: worker.loop, connectingTo: address)
        up.delegate = self
        upstream = up
        // AUTH and SELECT go first; their replies are swallowed before the client's begin.
        let handshake = worker.handshakeBytes
        if !handshake.bytes.isEmpty {
            up.output.append(handshake.bytes)
            handshakeOwed = handshake.replies
        }
        connectTimer = Timer(loop: worker.loop, millis: cfg.upstreamConnectTimeoutMillis) { [unowned self] in
            self.upstreamFailed("timed out connecting to upstream \(cfg.upstream.host):\(cfg.upstream.port)")
        }
    }

    func connectionEstablished(_ connection: Connection) {
        connectTimer?.cancel()
        connectTimer = nil
    }

    // MARK: - Requests: client → upstream

    func connectionReadable(_ connection: Connection) {
        if connection === client { clientReadable() } else { upstreamReadable() }
    }

    private func clientReadable() {
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
        dispatch(worker.frames)

        if case .protocolError(let reason) = status {
            let message = "ERR " + reason
            // Redis answers what came before the bad bytes, then the error, then closes.
            client.isReading = false
            input.drain(input.count)
            if owed == 0 || !sequenced || failure != nil {
                replyErrorAndClose(message)
            } else {
                protocolErrorAfterOwed = message
            }
        }
    }

    /// Forwards complete requests in order, noticing the commands that change how replies flow.
    private func dispatch(_ frames: [RequestFrame]) {
        let input = client.input
        if failure != nil {
            // The upstream is gone: each request gets the error, then the client is closed.
            var consumed = 0
            var answered = 0
            for frame in frames {
                consumed += frame.length
                if !frame.isEmpty { answered += 1 }
            }
            input.drain(consumed)
            if answered > 0 { answerWithFailure(count: answered) }
            return
        }
        var forward = 0          // bytes at the front of `input` ready to move upstream
        for frame in frames {
            if frame.isEmpty {
                flushForward(&forward)
                input.drain(frame.length)
                continue
            }
            notice(frame, at: forward)
            if sequenced { owed += 1 }
            forward += frame.length
        }
        flushForward(&forward)
    }

    private func flushForward(_ forward: inout Int) {
        guard forward > 0, let up = upstream else { return }
        client.input.move(forward, to: up.output)
        forward = 0
        if !up.flush() && up.output.count > worker.config.proxyBufferHighWater {
            // Redis is behind: stop reading this client until the upstream socket drains.
            client.isReading = false
            up.drainedAt = worker.config.proxyBufferHighWater / 2
            up.notifyWhenDrained = true
        }
    }

    /// Commands after which replies stop being one per request.
    private func notice(_ frame: RequestFrame, at offset: Int) {
        let name = frame.name
        if name == Commands.subscribe || name == Commands.psubscribe || name == Commands.ssubscribe {
            sequenced = false
            subscribed = true
        } else if name == Commands.monitor {
            sequenced = false
        } else if name == Commands.client, frame.argc >= 3,
                  argument(frame, 1, at: offset).lowercased() == "reply" {
            sequenced = false
        }
    }

    /// A small argument of `frame` (which starts `offset` bytes into the client input), as text.
    private func argument(_ frame: RequestFrame, _ index: Int, at offset: Int) -> String {
        if let inline = frame.inlineArgs {
            return index < inline.count ? String(decoding: inline[index], as: UTF8.self) : ""
        }
        let span = worker.spans[frame.spanStart + index]
        return String(decoding: client.input.copy(min(span.count, 64), offset: offset + span.offset), as: UTF8.self)
    }

    // MARK: - Replies: upstream → client

    private func upstreamReadable() {
        guard let up = upstream else { return }
        let input = up.input
        var counted = 0
        var base = 0
        var lastEnd = 0
        var handshakeEnd = 0            // bytes of swallowed handshake replies at the front
        var handshakeErrorAt: Int?      // where a refused AUTH/SELECT reply starts
        var status = ParseStatus.ok
        input.withSegments { segment in
            worker.replies.removeAll(keepingCapacity: true)
            status = scanner.feed(segment, replies: &worker.replies)
            for reply in worker.replies {
                lastEnd = base + reply.end
                if reply.isPush { continue }
                if handshakeOwed > 0 {
                    handshakeOwed -= 1
                    if reply.isError && handshakeErrorAt == nil { handshakeErrorAt = handshakeEnd }
                    handshakeEnd = base + reply.end
                    continue
                }
                counted += 1
            }
            base += segment.count
            return status == .ok
        }
        if status != .ok {
            Log.warning("Unparseable reply from upstream; closing the client")
            close()
            return
        }
        if let start = handshakeErrorAt {
            let text = String(decoding: input.copy(min(handshakeEnd - start, 512), offset: start), as: UTF8.self)
            upstreamFailed("upstream refused the proxy's AUTH/SELECT: \(firstLine(text))")
            return
        }
        if handshakeEnd > 0 { input.drain(handshakeEnd) }
        if handshakeOwed > 0 { return }          // the rest is the unfinished handshake reply

        midReply = lastEnd != base
        input.moveAll(to: client.output)
        if sequenced { owed -= counted }
        client.flush()

        if let message = protocolErrorAfterOwed, owed == 0 {
            protocolErrorAfterOwed = nil
            replyErrorAndClose(message)
            return
        }
        if shuttingDown && (owed == 0 || !sequenced) { closeAfterFlush(); return }
        enforceOutputLimits()
        if !isClosed && client.output.count > worker.config.proxyBufferHighWater {
            // The client is behind: stop reading Redis, so Redis's own output limits apply to it.
            up.isReading = false
            client.drainedAt = worker.config.proxyBufferHighWater / 2
            client.notifyWhenDrained = true
        }
    }

    private func enforceOutputLimits() {
        let limit = subscribed ? worker.config.outputLimitPubsub : worker.config.outputLimitNormal
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
            upstream?.isReading = true
        } else {
            connection.notifyWhenDrained = false
            if !shuttingDown && failure == nil { client.isReading = true }
        }
    }

    // MARK: - Failures and closing

    func connectionClosed(_ connection: Connection, error: String?) {
        if connection === client {
            // The client left (possibly mid-pipeline): release the upstream and every buffer now.
            close()
        } else {
            upstreamFailed(error.map { "upstream connection lost: \($0)" } ?? "upstream closed the connection")
        }
    }

    /// The upstream is gone. Requests still owed a reply get an error (unless a reply was cut in
    /// half, when nothing sensible can follow it); the client is closed once that is written.
    private func upstreamFailed(_ reason: String) {
        guard failure == nil, !isClosed else { return }
        failure = reason
        connectTimer?.cancel()
        connectTimer = nil
        if let up = upstream {
            // Whatever the upstream sent before closing (QUIT's +OK, a last reply) still goes out.
            if handshakeOwed == 0 && !up.input.isEmpty { upstreamReadable() }
            up.close()
        }
        upstream = nil
        if isClosed { return }
        Log.verbose("Client failed: \(reason)")
        if midReply { close(); return }
        let unanswered = sequenced ? owed : 0
        owed = 0
        if unanswered > 0 || protocolErrorAfterOwed != nil || !client.output.isEmpty {
            for _ in 0..<unanswered { writeError(failureMessage) }
            if let m = protocolErrorAfterOwed { writeError(m) }
            protocolErrorAfterOwed = nil
            closeAfterFlush()
        } else if shuttingDown {
            close()
        } else {
            // Nothing was owed yet (the client connected while Redis was down): wait briefly for its
            // first request so that it receives an error reply rather than a bare close.
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

    private func replyErrorAndClose(_ message: String) {
        writeError(message)
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
        if owed == 0 || !sequenced || failure != nil { closeAfterFlush() }
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        connectTimer?.cancel()
        lingerTimer?.cancel()
        connectTimer = nil
        lingerTimer = nil
        upstream?.close()
        upstream = nil
        client.close()
        worker.sessionClosed(self)
    }
}

private func firstLine(_ s: String) -> String {
    var line = s
    if line.hasPrefix("-") { line.removeFirst() }
    if let r = line.firstIndex(where: { $0 == "\r" || $0 == "\n" }) { line = String(line[..<r]) }
    return line
}
