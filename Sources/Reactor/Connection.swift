import CLibevent
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
public final class Connection {
    public let loop: EventLoop
    private var bev: OpaquePointer?
    public weak var delegate: ConnectionDelegate?
    /// True once `close()` ran.
    public private(set) var isClosed = false

    /// Wraps an accepted socket.
    public init(loop: EventLoop, fd: Int32) {
        self.loop = loop
        setNoDelay(fd)
        bev = bufferevent_socket_new(loop.base, fd, Int32(BEV_OPT_CLOSE_ON_FREE.rawValue))
        install()
    }

    /// Starts connecting to `address`; writes before the connection completes are queued.
    public init(loop: EventLoop, connectingTo address: SocketAddress) {
        self.loop = loop
        bev = bufferevent_socket_new(loop.base, -1, Int32(BEV_OPT_CLOSE_ON_FREE.rawValue))
        install()
        let rc = address.withSockaddr { sa, len in
            bufferevent_socket_connect(bev, UnsafeMutablePointer(mutating: sa), Int32(len))
        }
        if rc != 0 {
            // Reported from the loop so the owner sees one path for every failure.
            let message = String(cString: strerror(errno))
            loop.execute { [weak self] in
                guard let self, !self.isClosed else { return }
                self.delegate?.connectionClosed(self, error: message)
            }
        }
    }

    private func install() {
        bufferevent_setcb(bev, connectionReadTrampoline, nil, connectionEventTrampoline,
                          Unmanaged.passUnretained(self).toOpaque())
        bufferevent_enable(bev, Int16(EV_READ | EV_WRITE))
    }

    public var input: Buffer { Buffer(bufferevent_get_input(bev)!) }
    public var output: Buffer { Buffer(bufferevent_get_output(bev)!) }
    public var fd: Int32 { bufferevent_getfd(bev) }

    /// Pauses or resumes reading from the socket (backpressure).
    public var isReading: Bool = true {
        didSet {
            guard !isClosed, oldValue != isReading else { return }
            if isReading { bufferevent_enable(bev, Int16(EV_READ)) } else { bufferevent_disable(bev, Int16(EV_READ)) }
        }
    }

    /// While set, `connectionDrained` fires whenever the output falls to `drainedAt` bytes.
    public var notifyWhenDrained = false {
        didSet {
            guard !isClosed, oldValue != notifyWhenDrained else { return }
            bufferevent_setcb(bev, connectionReadTrampoline,
                              notifyWhenDrained ? connectionWriteTrampoline : nil,
                              connectionEventTrampoline, Unmanaged.passUnretained(self).toOpaque())
        }
    }

    /// The output level at or below which `connectionDrained` fires.
    public var drainedAt: Int = 0 {
        didSet { bufferevent_setwatermark(bev, Int16(EV_WRITE), drainedAt, 0) }
    }

    /// Closes the socket now; unsent output is dropped. No callbacks after this.
    public func close() {
        guard !isClosed, let b = bev else { return }
        isClosed = true
        bufferevent_setcb(b, nil, nil, nil, nil)
        bufferevent_free(b)
        bev = nil
        delegate = nil
    }

    fileprivate func readable() { delegate?.connectionReadable(self) }
    fileprivate func writable() { delegate?.connectionDrained(self) }

    fileprivate func event(_ what: Int16) {
        if what & Int16(BEV_EVENT_CONNECTED) != 0 {
            setNoDelay(fd)
            delegate?.connectionEstablished(self)
            return
        }
        if what & Int16(BEV_EVENT_ERROR) != 0 {
            let err = errno
            delegate?.connectionClosed(self, error: err == 0 ? "connection error" : String(cString: strerror(err)))
        } else if what & (Int16(BEV_EVENT_EOF) | Int16(BEV_EVENT_TIMEOUT)) != 0 {
            delegate?.connectionClosed(self, error: nil)
        }
    }

    deinit { close() }
}

private func setNoDelay(_ fd: Int32) {
    guard fd >= 0 else { return }
    var one: Int32 = 1
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
}

private func connectionReadTrampoline(_ bev: OpaquePointer?, _ arg: UnsafeMutableRawPointer?) {
    Unmanaged<Connection>.fromOpaque(arg!).takeUnretainedValue().readable()
}

private func connectionWriteTrampoline(_ bev: OpaquePointer?, _ arg: UnsafeMutableRawPointer?) {
    Unmanaged<Connection>.fromOpaque(arg!).takeUnretainedValue().writable()
}

private func connectionEventTrampoline(_ bev: OpaquePointer?, _ what: Int16, _ arg: UnsafeMutableRawPointer?) {
    Unmanaged<Connection>.fromOpaque(arg!).takeUnretainedValue().event(what)
}
