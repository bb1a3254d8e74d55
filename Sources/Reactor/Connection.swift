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
/// Either side may speak TLS (`TLSServer` for accepted connections, `TLSClient` for outgoing
/// ones): the connection then reads and writes ciphertext on the same one-readv, one-writev path
/// (`TLSChannel` turns it into `input` and out of `output`), and the owner sees the same buffers
/// and callbacks.
public final class Connection {
    public let loop: EventLoop
    var bev: OpaquePointer?
    /// TLS: the socket carries records, not the bytes of `input`/`output`.
    private let usesTLS: Bool
    var tls: TLSChannel?
    /// TLS: our own write event (the bufferevent's would write plaintext), on while bytes wait.
    var tlsWriteEvent: OpaquePointer?
    /// TLS, accepted: closes a client whose handshake does not finish in time.
    var handshakeTimer: OpaquePointer?
    /// TLS: a failure already reported (to the owner, from the loop): nothing more is done.
    var tlsFailed = false
    /// Not weak: a weak reference gives its object a side table, and every retain and release
    /// of that object (a client session, many times per request) then takes the runtime's slow
    /// path. The owner holds this connection and closes it before it goes (`close()` clears this,
    /// `deinit` closes), so no callback finds it gone; `tellOwner` holds it strongly for the
    /// length of each callback, in which it may drop its last other reference (closing itself).
    public unowned(unsafe) var delegate: ConnectionDelegate?
    /// One callback to the owner, which stays alive until it returns.
    @inline(__always) func tellOwner(_ call: (ConnectionDelegate) -> Void) {
        guard let owner = delegate else { return }
        withExtendedLifetime(owner) { call(owner) }
    }

    /// True once `close()` ran.
    public private(set) var isClosed = false
    /// Outgoing connections can't be written until the handshake completes.
    public internal(set) var isEstablished: Bool
    /// A `flush()` left bytes behind, so libevent's write event is finishing the job.
    var writeEventOn = false
    /// Our own read event: one readv per wakeup (bufferevent's read path adds an ioctl to each).
    var readEvent: OpaquePointer?
    /// Bytes to make room for per read.
    static let readSize = 16384
    /// Embedded (tests): the in-memory peer this connection talks to instead of a socket.
    public let embeddedPeer: EmbeddedPeer?

    /// Wraps an accepted socket. With `tls`, the connection is established once the client's
    /// handshake is done (a failed one, or one not done within the handshake timeout, is
    /// `connectionClosed` with the reason).
    public init(loop: EventLoop, fd: Int32, tls: TLSServer? = nil) {
        self.loop = loop
        self.isEstablished = tls == nil
        self.usesTLS = tls != nil
        embeddedPeer = nil
        setNoDelay(fd)
        bev = bufferevent_socket_new(loop.base, fd, Int32(BEV_OPT_CLOSE_ON_FREE.rawValue))
        install()
        if let tls {
            guard let ssl = tls.makeSSL(), let channel = TLSChannel(ssl: ssl, accepting: true) else {
                report("TLS: cannot set up an accepted connection")
                return
            }
            self.tls = channel
            startHandshakeTimer(milliseconds: tls.settings.handshakeTimeoutMillis)
        }
        startReading()
    }

    /// Starts connecting to `address` (with TLS when `tls` is given: established once the
    /// handshake and the certificate check are done); writes before then are queued.
    public init(loop: EventLoop, connectingTo address: SocketAddress, tls: TLSClient? = nil) {
        self.loop = loop
        self.isEstablished = false
        self.usesTLS = tls != nil
        embeddedPeer = nil
        bev = bufferevent_socket_new(loop.base, -1, Int32(BEV_OPT_CLOSE_ON_FREE.rawValue))
        if let tls {
            guard let ssl = tls.makeSSL(), let channel = TLSChannel(ssl: ssl, accepting: false) else {
                // Out of memory for an SSL: buffers for the owner to write into, never connected.
                report("TLS: cannot set up a connection to \(tls.serverName)")
                return
            }
            self.tls = channel
        }
        install()
        let rc = address.withSockaddr { sa, len in
            bufferevent_socket_connect(bev, UnsafeMutablePointer(mutating: sa), Int32(len))
        }
        if rc != 0 { report(String(cString: strerror(errno))) }
    }

    /// A connection to an in-memory peer, no socket (`EmbeddedPeer`, the habit of SwiftNIO's
    /// `EmbeddedChannel`): `flush()` hands the output to the peer at once, and the peer's bytes
    /// arrive when `deliverFromPeer()` is called. An outgoing one is established by `establish()`.
    public init(embeddedOn loop: EventLoop, established: Bool) {
        self.loop = loop
        isEstablished = established
        usesTLS = false
        embeddedPeer = EmbeddedPeer()
        bev = bufferevent_socket_new(loop.base, -1, 0)
        install()
    }

    /// Reports a failure from the loop, so the owner sees one path for every failure (and never
    /// inside its own call to `flush()`).
    func report(_ message: String) {
        loop.execute { [weak self] in
            guard let self, !self.isClosed else { return }
            self.tellOwner { $0.connectionClosed(self, error: message) }
        }
    }

    /// Reading and writing are ours, not the bufferevent's: a wakeup costs one readv, and
    /// `flush()` writes at once, so the usual request costs no epoll change. libevent's write
    /// event is enabled only while bytes are left over (TLS: our own write event); the
    /// bufferevent still owns connecting.
    private func install() {
        bufferevent_setcb(bev, nil, usesTLS ? nil : connectionWriteTrampoline,
                          connectionEventTrampoline, Unmanaged.passUnretained(self).toOpaque())
        // New bufferevents start with EV_WRITE enabled, which would arm EPOLLOUT on every write.
        // (An outgoing connect still completes: libevent watches for it regardless.)
        bufferevent_disable(bev, Int16(EV_READ | EV_WRITE))
    }

    private func startReading() {
        guard let b = bev else { return }
        let me = Unmanaged.passUnretained(self).toOpaque()
        readEvent = event_new(loop.base, bufferevent_getfd(b), Int16(EV_READ | EV_PERSIST), connectionReadTrampoline, me)
        if usesTLS {
            tlsWriteEvent = event_new(loop.base, bufferevent_getfd(b), Int16(EV_WRITE | EV_PERSIST),
                                      connectionTLSWriteTrampoline, me)
        }
        // The handshake reads whatever the owner asked for.
        if isReading || !isEstablished { event_add(readEvent, nil) }
    }

    /// One readv of up to `size` bytes straight into `buffer`'s free space (unfrozen around it, as
    /// bufferevent freezes the end of its input so only it appends); no copy, no FIONREAD.
    /// Returns the bytes read, 0 at end of stream, or -1 (errno says why).
    func readOnce(into buffer: OpaquePointer, size: Int) -> Int {
        guard let b = bev else { return -1 }
        var vecs = (iovec(), iovec())   // evbuffer_iovec is iovec on POSIX
        return withUnsafeMutableBytes(of: &vecs) { raw in
            let v = raw.baseAddress!.assumingMemoryBound(to: iovec.self)
            evbuffer_unfreeze(buffer, 0)
            defer { evbuffer_freeze(buffer, 0) }
            let count = evbuffer_reserve_space(buffer, size, v, 2)
            guard count > 0 else { return -1 }
            let got = readv(bufferevent_getfd(b), v, count)
            if got <= 0 { return got }
            var left = got
            for i in 0..<Int(count) {
                let take = min(left, v[i].iov_len)
                v[i].iov_len = take
                left -= take
            }
            evbuffer_commit_space(buffer, v, got > v[0].iov_len ? 2 : 1)
            return got
        }
    }

    /// One readv per wakeup into `input` (TLS: into the ciphertext buffer, then decrypted).
    fileprivate func readable() {
        guard let b = bev else { return }
        if let channel = tls { return tlsReadable(channel) }
        let n = readOnce(into: bufferevent_get_input(b), size: Connection.readSize)
        if n > 0 {
            tellOwner { $0.connectionReadable(self) }
        } else if n == 0 {
            tellOwner { $0.connectionClosed(self, error: nil) }
        } else if errno != EAGAIN && errno != EINTR {
            tellOwner { $0.connectionClosed(self, error: String(cString: strerror(errno))) }
        }
    }

    /// Writes as much of `output` as the socket takes now; the rest goes out when it is writable,
    /// followed by `connectionDrained` if `notifyWhenDrained` is set. Returns true if all was written.
    @discardableResult
    public func flush() -> Bool {
        guard let b = bev, isEstablished else { return false }
        if usesTLS { return tlsFlush() }
        if let peer = embeddedPeer { return peer.take(bufferevent_get_output(b)) }
        let out = bufferevent_get_output(b)
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

    /// A flush the owner did not ask for (at establishment, or after a TLS read): an owner
    /// waiting for `connectionDrained` (its own flush found the connection not ready) must hear
    /// that the output went, as no later write event will say it.
    func flushOnOwnAccord() {
        if flush() && notifyWhenDrained { tellOwner { $0.connectionDrained(self) } }
    }

    public var input: Buffer { Buffer(bufferevent_get_input(bev)!) }
    public var output: Buffer { Buffer(bufferevent_get_output(bev)!) }
    public var fd: Int32 { bufferevent_getfd(bev) }

    /// Pauses or resumes reading from the socket (backpressure).
    public var isReading: Bool = true {
        didSet {
            guard !isClosed, oldValue != isReading else { return }
            // A handshake reads regardless; its end applies the owner's choice.
            guard let e = readEvent, isEstablished else { return }
            if isReading {
                event_add(e, nil)
                // Records already in hand: the socket may never wake us for them.
                if tls?.hasBuffered == true { event_active(e, Int32(EV_READ), 0) }
            } else {
                event_del(e)
            }
        }
    }

    /// While set, `connectionDrained` fires when leftover output falls to `drainedAt` bytes.
    /// (A `flush()` that writes everything at once returns true instead of calling back.)
    public var notifyWhenDrained = false

    /// The output level at or below which `connectionDrained` fires.
    public var drainedAt: Int = 0 {
        didSet { if !usesTLS { bufferevent_setwatermark(bev, Int16(EV_WRITE), drainedAt, 0) } }
    }

    /// Closes the socket now; unsent output is dropped. No callbacks after this.
    public func close() {
        guard !isClosed, let b = bev else { return }
        isClosed = true
        tlsClose()
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
        if notifyWhenDrained { tellOwner { $0.connectionDrained(self) } }
    }

    fileprivate func event(_ what: Int16) {
        if what & Int16(BEV_EVENT_CONNECTED) != 0 {
            setNoDelay(fd)
            startReading()
            // TLS: connected is not established; the handshake starts now (its ClientHello).
            if let channel = tls { return tlsHandshake(channel, atEnd: false) }
            isEstablished = true
            tellOwner { $0.connectionEstablished(self) }
            if !isClosed { flushOnOwnAccord() }
            return
        }
        // Only connecting and plain writes get here: TLS connections read and write themselves.
        if what & Int16(BEV_EVENT_ERROR) != 0 {
            let err = errno
            tellOwner { $0.connectionClosed(self, error: err == 0 ? "connection error" : String(cString: strerror(err))) }
        } else if what & (Int16(BEV_EVENT_EOF) | Int16(BEV_EVENT_TIMEOUT)) != 0 {
            tellOwner { $0.connectionClosed(self, error: nil) }
        }
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

private func connectionTLSWriteTrampoline(_ fd: Int32, _ what: Int16, _ arg: UnsafeMutableRawPointer?) {
    Unmanaged<Connection>.fromOpaque(arg!).takeUnretainedValue().tlsWritable()
}

private func connectionWriteTrampoline(_ bev: OpaquePointer?, _ arg: UnsafeMutableRawPointer?) {
    Unmanaged<Connection>.fromOpaque(arg!).takeUnretainedValue().writable()
}

private func connectionEventTrampoline(_ bev: OpaquePointer?, _ what: Int16, _ arg: UnsafeMutableRawPointer?) {
    Unmanaged<Connection>.fromOpaque(arg!).takeUnretainedValue().event(what)
}
