import CLibevent
import COpenSSL
import Glibc

/// What a connection tells its owner. All calls arrive on the connection's loop.
public protocol ConnectionDelegate: AnyObject {
    /// New bytes are in `connection.input`.
    func connectionReadable(_ connection: Connection)
    /// `connection.output` fell to the drain watermark (only while `notifyWhenDrained` is set).
    func connectionDrained(_ connection: Connection)
    /// An outgoing connection completed its handshake.
    func connectionEstablished(_ connection: Connection)
    /// The peer closed, or the socket failed; `error` is nil for a clean end of stream.
    func connectionClosed(_ connection: Connection, error: String?)
}

/// A TCP connection (accepted or outgoing) on one loop: a libevent bufferevent with an input and
/// an output buffer. The owner keeps it alive and calls `close()`; after that no callback arrives.
/// An outgoing connection may speak TLS (`TLSClient`): libevent's OpenSSL bufferevent then does
/// the handshake, the reads and the writes, and the owner sees the same buffers and callbacks.
public final class Connection {
    public let loop: EventLoop
    private var bev: OpaquePointer?
    /// TLS: the bufferevent reads and writes through OpenSSL itself (the socket carries records,
    /// not the bytes of `input`/`output`), so the plain path's own readv/writev stay off.
    private let usesTLS: Bool
    /// Weak on purpose: the strong reference a weak load yields keeps the owner alive for the
    /// length of a callback in which it may drop its last other reference (closing itself).
    public weak var delegate: ConnectionDelegate?
    /// True once `close()` ran.
    public private(set) var isClosed = false
    /// Outgoing connections can't be written until the handshake completes.
    public private(set) var isEstablished: Bool
    /// A `flush()` left bytes behind, so libevent's write event is finishing the job.
    private var writeEventOn = false
    /// Our own read event: one readv per wakeup (bufferevent's read path adds an ioctl to each).
    private var readEvent: OpaquePointer?
    /// Bytes to make room for per read.
    private static let readSize = 16384

    /// Wraps an accepted socket. With `tls`, the connection is established once the client's
    /// handshake is done (a failed one is `connectionClosed` with OpenSSL's reason).
    public init(loop: EventLoop, fd: Int32, tls: TLSServer? = nil) {
        self.loop = loop
        self.isEstablished = tls == nil
        self.usesTLS = tls != nil
        setNoDelay(fd)
        if let tls, let ssl = tls.makeSSL() {
            bev = bufferevent_openssl_socket_new(loop.base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                 Int32(BEV_OPT_CLOSE_ON_FREE.rawValue))
            // A client that leaves without close_notify has ended its stream, as with TCP.
            bufferevent_openssl_set_allow_dirty_shutdown(bev, 1)
        }
        if bev == nil {
            bev = bufferevent_socket_new(loop.base, fd, Int32(BEV_OPT_CLOSE_ON_FREE.rawValue))
            if tls != nil { report("TLS: cannot set up an accepted connection"); return }
        }
        install()
        startReading()
    }

    /// Starts connecting to `address` (with TLS when `tls` is given: established once the
    /// handshake and the certificate check are done); writes before then are queued.
    public init(loop: EventLoop, connectingTo address: SocketAddress, tls: TLSClient? = nil) {
        self.loop = loop
        self.isEstablished = false
        self.usesTLS = tls != nil
        if let tls {
            if let ssl = tls.makeSSL() {
                bev = bufferevent_openssl_socket_new(loop.base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                     Int32(BEV_OPT_CLOSE_ON_FREE.rawValue))
                // A peer that closes without close_notify (Redis killed or restarted) has ended
                // the stream, as a plain connection's FIN would; it is not a TLS error.
                bufferevent_openssl_set_allow_dirty_shutdown(bev, 1)
            }
            if bev == nil {
                // Out of memory for an SSL: buffers for the owner to write into, never connected.
                bev = bufferevent_socket_new(loop.base, -1, Int32(BEV_OPT_CLOSE_ON_FREE.rawValue))
                report("TLS: cannot set up a connection to \(tls.serverName)")
                return
            }
        } else {
            bev = bufferevent_socket_new(loop.base, -1, Int32(BEV_OPT_CLOSE_ON_FREE.rawValue))
        }
        install()
        let rc = address.withSockaddr { sa, len in
            bufferevent_socket_connect(bev, UnsafeMutablePointer(mutating: sa), Int32(len))
        }
        if rc != 0 { report(String(cString: strerror(errno))) }
    }

    /// Reports a failure to start from the loop, so the owner sees one path for every failure.
    private func report(_ message: String) {
        loop.execute { [weak self] in
            guard let self, !self.isClosed else { return }
            self.delegate?.connectionClosed(self, error: message)
        }
    }

    /// Reading and writing are ours, not the bufferevent's: a wakeup costs one readv, and
    /// `flush()` writes at once, so the usual request costs no epoll change. libevent's write
    /// event is enabled only while bytes are left over; the bufferevent still owns connecting
    /// (and, with TLS, the handshake, reads and writes).
    private func install() {
        bufferevent_setcb(bev, usesTLS ? connectionTLSReadTrampoline : nil, connectionWriteTrampoline,
                          connectionEventTrampoline, Unmanaged.passUnretained(self).toOpaque())
        // New bufferevents start with EV_WRITE enabled, which would arm EPOLLOUT on every write.
        // (An outgoing connect still completes: libevent watches for it regardless.)
        bufferevent_disable(bev, Int16(EV_READ | EV_WRITE))
    }

    private func startReading() {
        guard let b = bev else { return }
        if usesTLS {
            // OpenSSL's bufferevent writes whatever `output` holds while EV_WRITE is on (it polls
            // for writability only while bytes wait), and reads while EV_READ is on; an accepted
            // connection's handshake needs both.
            bufferevent_enable(b, Int16(isReading || !isEstablished ? EV_READ | EV_WRITE : EV_WRITE))
            return
        }
        readEvent = event_new(loop.base, bufferevent_getfd(b), Int16(EV_READ | EV_PERSIST), connectionReadTrampoline,
                              Unmanaged.passUnretained(self).toOpaque())
        if isReading { event_add(readEvent, nil) }
    }

    /// One readv straight into the input buffer's free space; no copy, no FIONREAD.
    fileprivate func readable() {
        guard let b = bev else { return }
        let input = bufferevent_get_input(b)
        var vecs = (iovec(), iovec())   // evbuffer_iovec is iovec on POSIX
        let n: Int = withUnsafeMutableBytes(of: &vecs) { raw in
            let v = raw.baseAddress!.assumingMemoryBound(to: iovec.self)
            // bufferevent freezes the end of its input so only it appends; we read on its behalf.
            evbuffer_unfreeze(input, 0)
            defer { evbuffer_freeze(input, 0) }
            let count = evbuffer_reserve_space(input, Connection.readSize, v, 2)
            guard count > 0 else { return -1 }
            let got = readv(bufferevent_getfd(b), v, count)
            if got <= 0 { return got }
            var left = got
            for i in 0..<Int(count) {
                let take = min(left, v[i].iov_len)
                v[i].iov_len = take
                left -= take
            }
            evbuffer_commit_space(input, v, got > v[0].iov_len ? 2 : 1)
            return got
        }
        if n > 0 {
            delegate?.connectionReadable(self)
        } else if n == 0 {
            delegate?.connectionClosed(self, error: nil)
        } else if errno != EAGAIN && errno != EINTR {
            delegate?.connectionClosed(self, error: String(cString: strerror(errno)))
        }
    }

    /// Writes as much of `output` as the socket takes now; the rest goes out when it is writable,
    /// followed by `connectionDrained` if `notifyWhenDrained` is set. Returns true if all was written.
    @discardableResult
    public func flush() -> Bool {
        guard let b = bev, isEstablished else { return false }
        let out = bufferevent_get_output(b)
        // TLS: appending to `output` already scheduled the write (libevent encrypts and writes
        // when the socket is writable, in this same loop's next pass).
        if usesTLS { return evbuffer_get_length(out) == 0 }
        if writeEventOn { return evbuffer_get_length(out) == 0 }
        if evbuffer_get_length(out) > 0 {
            // bufferevent keeps the start of its output frozen so only it drains it; we write here
            // on its behalf, exactly as its own write callback does.
            evbuffer_unfreeze(out, 1)
            _ = evbuffer_write(out, bufferevent_getfd(b))
            evbuffer_freeze(out, 1)
        }
        if evbuffer_get_length(out) == 0 { return true }
        // Left over (full socket buffer, or an error libevent's write path will report).
        writeEventOn = true
        bufferevent_enable(b, Int16(EV_WRITE))
        return false
    }

    public var input: Buffer { Buffer(bufferevent_get_input(bev)!) }
    public var output: Buffer { Buffer(bufferevent_get_output(bev)!) }
    public var fd: Int32 { bufferevent_getfd(bev) }

    /// Pauses or resumes reading from the socket (backpressure).
    public var isReading: Bool = true {
        didSet {
            guard !isClosed, oldValue != isReading else { return }
            if usesTLS {
                guard isEstablished, let b = bev else { return }
                if isReading { bufferevent_enable(b, Int16(EV_READ)) } else { bufferevent_disable(b, Int16(EV_READ)) }
                return
            }
            guard let e = readEvent else { return }
            if isReading { event_add(e, nil) } else { event_del(e) }
        }
    }

    /// While set, `connectionDrained` fires when leftover output falls to `drainedAt` bytes.
    /// (A `flush()` that writes everything at once returns true instead of calling back.)
    public var notifyWhenDrained = false

    /// The output level at or below which `connectionDrained` fires.
    public var drainedAt: Int = 0 {
        didSet { bufferevent_setwatermark(bev, Int16(EV_WRITE), drainedAt, 0) }
    }

    /// Closes the socket now; unsent output is dropped. No callbacks after this.
    public func close() {
        guard !isClosed, let b = bev else { return }
        isClosed = true
        if let e = readEvent { event_free(e) }
        readEvent = nil
        bufferevent_setcb(b, nil, nil, nil, nil)
        bufferevent_free(b)
        bev = nil
        delegate = nil
    }

    fileprivate func writable() {
        guard let b = bev else { return }
        if writeEventOn && evbuffer_get_length(bufferevent_get_output(b)) == 0 {
            writeEventOn = false
            bufferevent_disable(b, Int16(EV_WRITE))
        }
        if notifyWhenDrained { delegate?.connectionDrained(self) }
    }

    fileprivate func event(_ what: Int16) {
        if what & Int16(BEV_EVENT_CONNECTED) != 0 {
            setNoDelay(fd)
            isEstablished = true
            startReading()
            delegate?.connectionEstablished(self)
            if !isClosed { flush() }
            return
        }
        if what & Int16(BEV_EVENT_ERROR) != 0 {
            let err = errno
            let plain = err == 0 ? nil : String(cString: strerror(err))
            let message = usesTLS ? tlsFailure(fallback: plain) : (plain ?? "connection error")
            delegate?.connectionClosed(self, error: message)
        } else if what & (Int16(BEV_EVENT_EOF) | Int16(BEV_EVENT_TIMEOUT)) != 0 {
            // A TLS peer that refused us (no client certificate, say) sent an alert and closed;
            // if our write hit the closed socket first, the alert is still unread: say it.
            let alert = usesTLS ? unreadAlert() : []
            delegate?.connectionClosed(self, error: alert.isEmpty ? nil : TLSClient.failure(ssl: nil, errors: alert, fallback: nil))
        }
    }

    /// The OpenSSL errors libevent kept for this connection.
    private func queuedErrors(_ b: OpaquePointer) -> [UInt] {
        var codes: [UInt] = []
        while case let code = bufferevent_get_openssl_error(b), code != 0 { codes.append(UInt(code)) }
        return codes
    }

    /// OpenSSL's reasons from one last read of what the peer sent before it closed (only ever
    /// called once the connection is over, so no data can be lost by it).
    private func unreadAlert() -> [UInt] {
        guard let b = bev, let ssl = bufferevent_openssl_get_ssl(b) else { return [] }
        var codes = queuedErrors(b)
        ERR_clear_error()
        var scratch = (UInt64(0), UInt64(0))
        let n = withUnsafeMutableBytes(of: &scratch) { SSL_read(ssl, $0.baseAddress, Int32($0.count)) }
        if n <= 0 {
            while case let code = ERR_get_error(), code != 0 { codes.append(UInt(code)) }
        }
        return codes
    }

    /// What went wrong with TLS: the certificate check's verdict, OpenSSL's reasons (an alert
    /// from the server, such as "certificate required"), or the socket's error.
    private func tlsFailure(fallback: String?) -> String {
        guard let b = bev else { return fallback ?? "TLS connection closed" }
        let codes = queuedErrors(b)
        // Only a failed handshake has a certificate verdict worth reporting.
        let ssl = isEstablished ? nil : bufferevent_openssl_get_ssl(b)
        return TLSClient.failure(ssl: ssl, errors: codes, fallback: fallback)
    }

    deinit { close() }
}

private func setNoDelay(_ fd: Int32) {
    guard fd >= 0 else { return }
    var one: Int32 = 1
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
}

private func connectionReadTrampoline(_ fd: Int32, _ what: Int16, _ arg: UnsafeMutableRawPointer?) {
    Unmanaged<Connection>.fromOpaque(arg!).takeUnretainedValue().readable()
}

private func connectionTLSReadTrampoline(_ bev: OpaquePointer?, _ arg: UnsafeMutableRawPointer?) {
    let c = Unmanaged<Connection>.fromOpaque(arg!).takeUnretainedValue()
    c.delegate?.connectionReadable(c)
}

private func connectionWriteTrampoline(_ bev: OpaquePointer?, _ arg: UnsafeMutableRawPointer?) {
    Unmanaged<Connection>.fromOpaque(arg!).takeUnretainedValue().writable()
}

private func connectionEventTrampoline(_ bev: OpaquePointer?, _ what: Int16, _ arg: UnsafeMutableRawPointer?) {
    Unmanaged<Connection>.fromOpaque(arg!).takeUnretainedValue().event(what)
}
