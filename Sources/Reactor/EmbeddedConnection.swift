import CLibevent

/// The far end of an embedded `Connection`: what the connection wrote to it, and what it will
/// send the connection next. Lets a test drive a connection's owner (a client session, an
/// upstream link) with bytes in and bytes out, deterministic, without sockets or a running loop.
public final class EmbeddedPeer {
    /// Every byte the connection has flushed, in order, until the test drains it.
    public let received = Buffer.make()
    /// Bytes the peer has sent that the connection has not read yet (as if still in the socket).
    let unread = Buffer.make()

    /// A flush: all of a bufferevent's `output` reaches the peer (its start unfrozen around the
    /// move, as `Connection.flush` does around its write).
    func take(_ output: OpaquePointer) -> Bool {
        evbuffer_unfreeze(output, 1)
        evbuffer_add_buffer(received.raw, output)
        evbuffer_freeze(output, 1)
        return true
    }

    /// Bytes the peer sent that the connection has not read yet.
    public var unreadCount: Int { unread.count }

    /// What the peer received so far, taken out.
    public func drainReceived() -> [UInt8] {
        let bytes = received.copy(received.count)
        received.drain(bytes.count)
        return bytes
    }

    deinit {
        received.free()
        unread.free()
    }
}

extension Connection {
    /// The peer sends `bytes`; they are read at the next `deliverFromPeer()` the owner allows.
    public func peerSends(_ bytes: [UInt8]) { embeddedPeer?.unread.append(bytes) }

    /// One read, as the socket's read event would do it: what the peer sent moves to `input`
    /// and the owner is told, if the owner reads now. Returns true if anything was delivered.
    @discardableResult
    public func deliverFromPeer() -> Bool {
        guard let peer = embeddedPeer, let b = bev, !isClosed, isReading, isEstablished, !peer.unread.isEmpty else { return false }
        // bufferevent freezes the end of its input so that only it appends (as `readOnce` does).
        let input = bufferevent_get_input(b)!
        evbuffer_unfreeze(input, 0)
        peer.unread.moveAll(to: Buffer(input))
        evbuffer_freeze(input, 0)
        tellOwner { $0.connectionReadable(self) }
        return true
    }

    /// The peer closes its end: the owner hears of it as of a clean end of stream.
    public func peerCloses() {
        guard embeddedPeer != nil, !isClosed else { return }
        tellOwner { $0.connectionClosed(self, error: nil) }
    }

    /// An outgoing embedded connection completes its connect: what waited is flushed.
    public func establish() {
        guard embeddedPeer != nil, !isEstablished, !isClosed else { return }
        isEstablished = true
        tellOwner { $0.connectionEstablished(self) }
        if !isClosed { flushOnOwnAccord() }
    }
}
