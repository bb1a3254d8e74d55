import Foundation
import Testing
import Reactor
import Tiers
@testable import RespServer

/// A proxy loop with no sockets, the habit of SwiftNIO's `EmbeddedChannel`: real `ClientSession`s
/// and `UpstreamLink`s on embedded connections (`Connection(embeddedOn:)`), the upstream played
/// by `MemoryRedis`. A test pushes a client's bytes in, calls `run()`, and reads what came out.
final class EmbeddedProxy {
    let worker: Worker
    /// The one Redis every upstream connection reaches (its data is shared, as a server's is).
    let store = MemoryRedis.Store()
    private(set) var upstreams: [Upstream] = []
    private var clients: [EmbeddedClient] = []
    /// Replies go to the proxy in pieces of at most this many bytes, one piece per round.
    var replyChunk = Int.max
    /// Redis runs what it is sent but its replies wait (a slow network) until this is false again.
    var holdsReplies = false

    final class Upstream {
        let connection: Connection
        let redis: MemoryRedis
        /// Reply bytes not yet sent to the proxy.
        var outgoing: [UInt8] = []
        var closesAfterReplies = false

        init(_ connection: Connection, _ redis: MemoryRedis) {
            self.connection = connection
            self.redis = redis
        }
    }

    /// The proxy's own files (key log, database map, the default embedded tiers), one directory
    /// per proxy: tests run in parallel, and two key logs on one file do not end well.
    private let dataDir: String

    init(_ configure: (inout Config) -> Void = { _ in }) throws {
        var template = Array("/tmp/embedded-proxy-XXXXXX".utf8CString)
        guard let dir = mkdtemp(&template) else { throw ConfigError("mkdtemp failed") }
        dataDir = String(cString: dir)
        var config = Config()
        config.dataDir = dataDir
        configure(&config)
        let tiering = TieringCore(config: config)
        let clientCount = AtomicCounter()
        worker = Worker(index: 0, config: config,
                        upstreamAddress: try SocketAddress.resolve(host: "127.0.0.1", port: 6379).first,
                        clientCount: clientCount, tierSetup: try TierSetup(config: config, environment: [:]),
                        tiering: tiering, metrics: ProxyMetrics(loops: 1, clientCount: clientCount, tiering: tiering))
        worker.makeUpstreamConnection = { [unowned self] in
            let c = Connection(embeddedOn: worker.loop, established: false)
            upstreams.append(Upstream(c, MemoryRedis(store)))
            return c
        }
    }

    deinit { try? FileManager.default.removeItem(atPath: dataDir) }

    /// A client connects: a session on an embedded connection.
    func connect() -> EmbeddedClient {
        let connection = Connection(embeddedOn: worker.loop, established: true)
        let client = EmbeddedClient(connection: connection, session: ClientSession(worker: worker, client: connection))
        clients.append(client)
        return client
    }

    /// Runs until nothing moves: the loop's ready work, connects completing, Redis answering
    /// what reached it, and each side reading what the other sent (when its owner reads).
    func run() {
        for _ in 0..<100_000 {
            worker.loop.runPending()
            var moved = false
            for u in upstreams where !u.connection.isClosed {
                moved = serve(u) || moved
            }
            for c in clients { moved = c.connection.deliverFromPeer() || moved }
            if !moved { return }
        }
        Issue.record("the embedded proxy never settled")
    }

    private func serve(_ u: Upstream) -> Bool {
        var moved = false
        if !u.connection.isEstablished { u.connection.establish(); moved = true }
        let requests = u.connection.embeddedPeer!.drainReceived()
        if !requests.isEmpty {
            let (replies, closes) = u.redis.serve(requests)
            u.outgoing += replies
            u.closesAfterReplies = u.closesAfterReplies || closes
            moved = true
        }
        if !holdsReplies && !u.outgoing.isEmpty && u.connection.embeddedPeer!.unreadCount == 0 {
            let piece = u.outgoing.prefix(replyChunk)
            u.outgoing.removeFirst(piece.count)
            u.connection.peerSends(Array(piece))
        }
        moved = u.connection.deliverFromPeer() || moved
        if u.outgoing.isEmpty && u.closesAfterReplies && u.connection.embeddedPeer!.unreadCount == 0 {
            u.closesAfterReplies = false
            u.connection.peerCloses()
            moved = true
        }
        return moved
    }
}

/// One client of an `EmbeddedProxy`: what it sends, what it got.
struct EmbeddedClient {
    let connection: Connection
    let session: ClientSession

    func send(_ bytes: [UInt8]) { connection.peerSends(bytes) }
    func send(_ text: String) { send(Array(text.utf8)) }

    /// Everything the proxy wrote to this client since the last call.
    func received() -> [UInt8] { connection.embeddedPeer!.drainReceived() }
    func receivedText() -> String { String(decoding: received(), as: UTF8.self) }

    /// The proxy closed the connection.
    var isClosed: Bool { connection.isClosed }
}
