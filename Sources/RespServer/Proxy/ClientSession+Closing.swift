import RESP
import Reactor

/// Failures and closing, as `FailurePolicy` decides: the upstream lost (shared or own), the
/// client gone, output limits overrun, shutdown.
extension ClientSession {
    /// The shared connection failed with `replies` of ours unanswered. This client holds no
    /// connection state, so it gets errors and carries on; the next request reconnects.
    func sharedFailed(replies: Int, reason: String, cutMidReply: Bool) {
        sharedOwed -= replies
        if isClosed {
            sequencer.discardCapture()
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

    /// The client's output-buffer class, as Redis classifies it.
    var outputLimit: OutputLimit {
        pipe.outputLimit(subscribed ? worker.config.outputLimitPubsub : worker.config.outputLimitNormal)
    }

    /// Limits are enforced on what the proxy holds for the client, as Redis does on its buffer.
    func enforceOutputLimits() {
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

    func connectionClosed(_ connection: Connection, error: String?) {
        // As Redis logs a failed TLS accept (plain text on the TLS port, no client certificate).
        if let error { Log.verbose(connection.isEstablished ? "Client closed: \(error)" : "Error accepting a client connection: \(error)") }
        // The client left (possibly mid-pipeline): release the upstream and every buffer now.
        close()
    }

    func linkFailed(_ link: UpstreamLink, reason: String) { dedicatedFailed(reason) }

    /// The dedicated upstream is gone, and the connection state with it: what follows is
    /// `FailurePolicy.afterUpstreamLoss`'s to decide.
    func dedicatedFailed(_ reason: String) {
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
        if FailurePolicy.failsInterceptsFirst(upstreamLoss(wasConnected: wasConnected)) {
            // Replies the proxy's own requests still wait for will not come: their handlers
            // get an error now and finish (a tiered command answers with what Redis did say,
            // e.g. the protocol error before it closed), so their slots can go out.
            owed -= failPendingIntercepts()
            if isClosed { return }
        }
        let verdict = FailurePolicy.afterUpstreamLoss(upstreamLoss(wasConnected: wasConnected))
        if verdict == .finishComposedThenClose { closeWhenComposed = true; return }
        owed = 0
        switch verdict {
        case .finishComposedThenClose, .closeNow:
            close()
        case .answerThenClose(let errors):
            for _ in 0..<errors { writeError(failureMessage) }
            if let m = protocolErrorAfterOwed { client.output.append(m) }
            protocolErrorAfterOwed = nil
            closeAfterFlush()
        case .linger:
            lingerTimer = Timer(loop: worker.loop, millis: worker.config.upstreamConnectTimeoutMillis) { [unowned self] in
                self.close()
            }
        }
    }

    /// What the session holds as its own upstream connection is lost.
    func upstreamLoss(wasConnected: Bool) -> FailurePolicy.UpstreamLoss {
        FailurePolicy.UpstreamLoss(midReply: midReply, interceptsPending: sequencer.interceptsPending,
                                   capturing: sequencer.isCapturing, holding: sequencer.isHolding, quitting: quitting,
                                   unanswered: sequenced ? owed : 0, protocolErrorOwed: protocolErrorAfterOwed != nil,
                                   outputPending: !client.output.isEmpty, shuttingDown: shuttingDown,
                                   wasConnected: wasConnected)
    }

    var failureMessage: String { "ERR tierproxy: \(failure ?? "upstream unavailable")" }

    func answerWithFailure(count: Int) {
        for _ in 0..<count { writeError(failureMessage) }
        closeAfterFlush()
    }

    func writeError(_ message: String) {
        client.output.append("-")
        client.output.append(message)
        client.output.append("\r\n")
    }

    func replyErrorAndClose(_ reply: [UInt8]) {
        client.output.append(reply)
        closeAfterFlush()
    }

    func closeAfterFlush() {
        guard !isClosed else { return }
        if client.flush() { close(); return }
        closeWhenFlushed = true
        client.drainedAt = 0
        client.notifyWhenDrained = true
        updateReading()
    }

    /// Shutdown: read nothing more; close once every reply already requested has been written.
    func beginShutdown() {
        shuttingDown = true
        updateReading()
        if allAnswered || !sequenced || failure != nil { closeAfterFlush() }
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        lingerTimer?.cancel()
        lingerTimer = nil
        dedicated?.close()
        dedicated = nil
        sequencer.discardHeld()
        client.close()
        worker.sessionClosed(self)
        // Replies still owed on the shared connection will reach their handlers; those owed
        // on the dedicated one never will.
        if pinned || sharedOwed == 0 {
            sequencer.discardCapture()
            failPendingIntercepts()
        }
    }
}
