import RESP
import Reactor

/// What an upstream link tells its owner (the shared connection, or a pinned session).
protocol UpstreamLinkDelegate: AnyObject {
    /// Replies are in `link.input` (the handshake's own replies are already gone).
    func linkReadable(_ link: UpstreamLink)
    /// Leftover output drained (only while `notifyWhenDrained` is set).
    func linkDrained(_ link: UpstreamLink)
    /// Connecting timed out or failed, Redis refused the handshake, or the connection ended.
    func linkFailed(_ link: UpstreamLink, reason: String)
}

/// A connection to the upstream Redis that first sends the proxy's AUTH/SELECT and holds every
/// other byte until Redis has accepted them. Pipelining requests behind the handshake would let
/// Redis run them even when the handshake is refused: as the default user, or in database 0.
/// Without a handshake (no password, db 0) nothing is held once the credential is known (at once,
/// unless it waits for Key Vault or an Entra ID token).
final class UpstreamLink: ConnectionDelegate {
    let connection: Connection
    /// Not weak, as `Connection.delegate` is not (a weak reference sends every retain of the
    /// owner, the shared upstream or a pinned session, down the runtime's slow path): the owner
    /// closes this link before it goes (`close()` clears it); `tellOwner` holds it for a callback.
    unowned(unsafe) var delegate: UpstreamLinkDelegate?
    /// The owner's bytes, held while the handshake is unanswered.
    private var held: Buffer?
    private var handshakeOwed: Int
    /// Waiting for the upstream credential; nothing has been sent.
    private var awaitingCredential = false
    private var closed = false
    private var connectTimer: Timer?
    /// The TCP connection was established (a later failure is a loss, not an outage at connect).
    private(set) var connected = false

    /// Counted open in this loop's metrics until `close()` (or deinit), as shared or pinned.
    private unowned(unsafe) let metrics: LoopMetrics
    private let gauge: LoopMetrics.Cell
    private var counted = true
    /// host:port, for error replies.
    private let upstreamName: String

    init(worker: Worker, address: SocketAddress, delegate: UpstreamLinkDelegate) {
        self.delegate = delegate
        upstreamName = "\(worker.config.upstream.host):\(worker.config.upstream.port)"
        metrics = worker.metrics
        gauge = delegate is SharedUpstream ? .sharedLinks : delegate is ClientSession ? .pinnedLinks : .proxyLinks
        metrics.add(gauge)
        metrics.add(.upstreamConnections)
        connection = worker.makeUpstreamConnection?()
            ?? Connection(loop: worker.loop, connectingTo: address, tls: worker.config.upstreamTLS)
        handshakeOwed = 0
        connection.delegate = self
        // The credential may not be there yet (Key Vault, the token endpoint): hold until it is.
        held = Buffer.make()
        awaitingCredential = true
        worker.credential.handshake { [weak self] r in self?.credentialArrived(r, loop: worker.loop) }
        let cfg = worker.config
        connectTimer = Timer(loop: worker.loop, millis: cfg.upstreamConnectTimeoutMillis) { [unowned self] in
            self.fail("timed out connecting to upstream \(cfg.upstream.host):\(cfg.upstream.port)")
        }
    }

    var input: Buffer { connection.input }
    /// Where the owner writes: held back until the handshake is accepted.
    var output: Buffer { held ?? connection.output }
    var isHandshaking: Bool { handshakeOwed > 0 || awaitingCredential }

    /// Writes what the socket takes now (nothing while the handshake is unanswered).
    @discardableResult
    func flush() -> Bool { held == nil && connection.flush() }

    var isReading: Bool {
        get { connection.isReading }
        set { connection.isReading = newValue }
    }
    var notifyWhenDrained: Bool {
        get { connection.notifyWhenDrained }
        set { connection.notifyWhenDrained = newValue }
    }
    var drainedAt: Int {
        get { connection.drainedAt }
        set { connection.drainedAt = newValue }
    }

    deinit { uncount() }

    /// One callback to the owner, which stays alive until it returns.
    @inline(__always) private func tellOwner(_ call: (UpstreamLinkDelegate) -> Void) {
        guard let owner = delegate else { return }
        withExtendedLifetime(owner) { call(owner) }
    }

    private func uncount() {
        if counted { counted = false; metrics.add(gauge, -1) }
    }

    func close() {
        closed = true
        delegate = nil
        uncount()
        connectTimer?.cancel()
        connectTimer = nil
        held?.free()
        held = nil
        connection.close()
    }

    // MARK: - ConnectionDelegate

    func connectionEstablished(_ c: Connection) {
        connectTimer?.cancel()
        connectTimer = nil
        connected = true
    }

    func connectionReadable(_ c: Connection) {
        if awaitingCredential { return }
        if handshakeOwed > 0 { readHandshake() } else { tellOwner { $0.linkReadable(self) } }
    }

    func connectionDrained(_ c: Connection) { tellOwner { $0.linkDrained(self) } }

    func connectionClosed(_ c: Connection, error: String?) {
        // Before the connection is established (TLS: handshake and certificate check done) the
        // failure is the upstream's address or certificate, which is what the client must read.
        if !connected, let error {
            fail("cannot connect to upstream \(upstreamName): \(error)")
            return
        }
        fail(error.map { "upstream connection lost: \($0)" } ?? "upstream closed the connection")
    }

    /// Sends the handshake, or with none releases the owner's bytes; no credential: the link
    /// fails, on the next loop pass (the owner may still be making it).
    private func credentialArrived(_ r: Result<(bytes: [UInt8], replies: Int), UpstreamAuthError>, loop: EventLoop) {
        awaitingCredential = false
        switch r {
        case .failure(let e):
            loop.execute { [weak self] in
                if let self, !self.closed { self.fail("no upstream credential: \(e)") }
            }
        case .success(let h) where h.replies == 0:
            releaseHeld()
            if connection.flush() && connection.notifyWhenDrained { tellOwner { $0.linkDrained(self) } }
        case .success(let h):
            handshakeOwed = h.replies
            connection.output.append(h.bytes)
            connection.flush()
        }
    }

    private func releaseHeld() {
        if let h = held {
            h.moveAll(to: connection.output)
            h.free()
            held = nil
        }
    }

    /// Only handshake replies can be in the input now (nothing else was sent): count them, check
    /// each, and once all are in, release the owner's bytes.
    private func readHandshake() {
        let input = connection.input
        var framer = ReplyFramer()
        var ends: [ReplyEnd] = []
        let (status, _) = framer.scan({ input.withSegments($0) }, into: &ends, until: handshakeOwed)
        guard status == .ok else { fail("unparseable reply to the proxy's AUTH/SELECT"); return }
        var start = 0
        for end in ends.prefix(handshakeOwed).lazy.map(\.end) {
            if input.copy(1, offset: start).first == UInt8(ascii: "-") {
                let text = String(decoding: input.copy(min(end - start, 512), offset: start), as: UTF8.self)
                let line = text.dropFirst().split(whereSeparator: { $0 == "\r" || $0 == "\n" }).first ?? ""
                fail("upstream refused the proxy's AUTH/SELECT: \(line)")
                return
            }
            start = end
        }
        guard ends.count >= handshakeOwed else { return }     // the rest is still arriving
        input.drain(ends[handshakeOwed - 1].end)
        handshakeOwed = 0
        releaseHeld()
        if connection.flush() && connection.notifyWhenDrained { tellOwner { $0.linkDrained(self) } }
        if !input.isEmpty { tellOwner { $0.linkReadable(self) } }
    }

    private func fail(_ reason: String) {
        metrics.add(.upstreamFailures)
        connectTimer?.cancel()
        connectTimer = nil
        tellOwner { $0.linkFailed(self, reason: reason) }
    }
}
