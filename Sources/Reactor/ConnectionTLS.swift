import CLibevent
import COpenSSL
import Glibc

/// A TLS connection's reads and writes: the plain path's one readv and one writev per wakeup,
/// carrying ciphertext (`TLSChannel` decrypts into `input` and encrypts out of `output`), and a
/// write event of our own that is on only while bytes wait for the socket.
extension Connection {
    /// Ciphertext read per wakeup: the plain read size and room for a full record's header and
    /// tag, so a 16 KB record read on its own is not split.
    static let tlsReadSize = Connection.readSize + 1024

    func tlsReadable(_ channel: TLSChannel) {
        guard !tlsFailed else { return }
        let n = readOnce(into: channel.cipherIn, size: Connection.tlsReadSize)
        if n == 0 {
            channel.markEndOfStream()
        } else if n < 0 {
            if errno != EAGAIN && errno != EINTR { return tlsFail(String(cString: strerror(errno))) }
            if !channel.hasBuffered { return }
        }
        if !channel.handshakeDone {
            tlsHandshake(channel, atEnd: n == 0)
            if !channel.handshakeDone || isClosed || tlsFailed { return }
        }
        tlsDeliver(channel, atEnd: n == 0)
    }

    /// Decrypts what came, hands it to the owner, then reports the end if the stream ended.
    private func tlsDeliver(_ channel: TLSChannel, atEnd: Bool) {
        guard let b = bev, !tlsFailed else { return }
        let (bytes, outcome) = channel.decrypt(into: bufferevent_get_input(b))
        // Reading may have produced records of our own to send (a KeyUpdate's answer, an alert).
        if evbuffer_get_length(channel.cipherOut) > 0 || !output.isEmpty { flushOnOwnAccord() }
        if bytes > 0 {
            tellOwner { $0.connectionReadable(self) }
            if isClosed { return }
        }
        switch outcome {
        case .failed(let message): tlsFail(message, now: true)
        case .ended: tellOwner { $0.connectionClosed(self, error: nil) }
        case .ok: if atEnd { tellOwner { $0.connectionClosed(self, error: nil) } }
        }
    }

    /// One step of the handshake; once it is done the connection is established (the owner's
    /// queued output goes out, its read choice applies).
    func tlsHandshake(_ channel: TLSChannel, atEnd: Bool) {
        let outcome = channel.handshake()
        _ = tlsPush(channel)                     // our next flight, or the alert that refuses the peer
        if case .failed(let message) = outcome { return tlsFail(message, now: true) }
        if !channel.handshakeDone {
            if atEnd || outcome == .ended { tlsFail("TLS handshake failed: connection closed", now: true) }
            return
        }
        isEstablished = true
        if let t = handshakeTimer { event_free(t); handshakeTimer = nil }
        if !isReading, let e = readEvent { event_del(e) }
        tellOwner { $0.connectionEstablished(self) }
        if !isClosed { flushOnOwnAccord() }
    }

    /// `flush()` for TLS: encrypts and writes what the socket takes now; the rest waits for our
    /// write event. True if nothing is left.
    func tlsFlush() -> Bool {
        guard let channel = tls, !tlsFailed else { return false }
        if writeEventOn { return false }
        if tlsPump(channel) { return true }
        if !tlsFailed, let e = tlsWriteEvent {
            writeEventOn = true
            event_add(e, nil)
        }
        return false
    }

    /// Writes `cipherOut`, encrypting more of `output` as the socket takes it. True when both
    /// are empty; false when the socket is full, or OpenSSL waits for the peer, or it failed.
    private func tlsPump(_ channel: TLSChannel) -> Bool {
        let out = output.raw
        while true {
            guard tlsPush(channel) else { return false }
            if evbuffer_get_length(out) == 0 || !channel.handshakeDone { return evbuffer_get_length(out) == 0 }
            if case .failed(let message) = channel.encrypt(from: out) {
                tlsFail(message)
                return false
            }
            // Nothing encrypted: a renegotiation waits for the peer (reading resumes us).
            if evbuffer_get_length(channel.cipherOut) == 0 { return false }
        }
    }

    /// Writes `cipherOut` (one writev); true if it is empty now.
    private func tlsPush(_ channel: TLSChannel) -> Bool {
        let cipher = channel.cipherOut
        guard evbuffer_get_length(cipher) > 0, let b = bev else { return true }
        if evbuffer_write(cipher, bufferevent_getfd(b)) < 0 && errno != EAGAIN && errno != EINTR {
            tlsWriteFailed(channel, errno)
            return false
        }
        return evbuffer_get_length(cipher) == 0
    }

    /// The socket refused our bytes. A peer that refused us (no client certificate, say) sent an
    /// alert before it closed: it is still unread, and says more than "broken pipe".
    private func tlsWriteFailed(_ channel: TLSChannel, _ err: Int32) {
        let plain = String(cString: strerror(err))
        _ = readOnce(into: channel.cipherIn, size: Connection.tlsReadSize)
        channel.markEndOfStream()
        if let b = bev {
            let (_, outcome) = channel.decrypt(into: bufferevent_get_input(b))
            if case .failed(let message) = outcome { return tlsFail(message) }
        }
        tlsFail(plain)
    }

    func tlsWritable() {
        guard let channel = tls, !tlsFailed else { return }
        let done = tlsPump(channel)
        if done, let e = tlsWriteEvent {
            writeEventOn = false
            event_del(e)
        }
        if notifyWhenDrained && output.count <= drainedAt { tellOwner { $0.connectionDrained(self) } }
    }

    /// Reports a TLS failure once; `now` inside our own callbacks, else from the loop (never
    /// inside the owner's `flush()`).
    func tlsFail(_ message: String, now: Bool = false) {
        guard !tlsFailed else { return }
        tlsFailed = true
        if let e = readEvent { event_del(e) }
        if let e = tlsWriteEvent { event_del(e) }
        if now { tellOwner { $0.connectionClosed(self, error: message) } } else { report(message) }
    }

    /// A handshake not done in time closes the connection (a client that connects and sends
    /// nothing, or stops halfway, would otherwise hold its socket and memory for good).
    func startHandshakeTimer(milliseconds: Int) {
        guard milliseconds > 0 else { return }
        handshakeTimer = event_new(loop.base, -1, 0, connectionHandshakeTimeoutTrampoline,
                                   Unmanaged.passUnretained(self).toOpaque())
        var tv = timeval(tv_sec: milliseconds / 1000, tv_usec: Int((milliseconds % 1000) * 1000))
        event_add(handshakeTimer, &tv)
    }

    fileprivate func handshakeTimedOut() {
        guard !isEstablished, !isClosed else { return }
        tlsFail("TLS handshake timed out", now: true)
    }

    /// Our close_notify as a last write, best effort (the socket closes right after), then the
    /// TLS state and its events go.
    func tlsClose() {
        if let channel = tls {
            channel.shutdown()
            if let b = bev, evbuffer_get_length(channel.cipherOut) > 0 {
                _ = evbuffer_write(channel.cipherOut, bufferevent_getfd(b))
            }
        }
        if let e = tlsWriteEvent { event_free(e) }
        if let t = handshakeTimer { event_free(t) }
        tlsWriteEvent = nil
        handshakeTimer = nil
        tls = nil
    }
}

private func connectionHandshakeTimeoutTrampoline(_ fd: Int32, _ what: Int16, _ arg: UnsafeMutableRawPointer?) {
    Unmanaged<Connection>.fromOpaque(arg!).takeUnretainedValue().handshakeTimedOut()
}
