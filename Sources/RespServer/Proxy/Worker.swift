import RESP
import Reactor
import Tiers
import Glibc

/// Everything one event loop owns: its listening sockets, its client sessions, the command table
/// and the scratch arrays the parser fills (one set per loop, reused by every session).
final class Worker {
    let loop: EventLoop
    let config: Config
    let index: Int
    let upstreamAddress: SocketAddress?
    /// What this loop's upstream connections authenticate with.
    let credential: LoopCredential
    private let clientCount: AtomicCounter
    private var listeners: [Listener] = []
    private var sessions: [ObjectIdentifier: ClientSession] = [:]
    private var loader: CommandTableLoader?
    private(set) var commandTable = CommandTable()
    /// Per command: may it travel on the shared connection? Filled when the table arrives.
    private var shareable: [CommandName: Bool] = [:]
    /// Commands worth a look by the tiering (the string table's, and every command `WriteRule`
    /// tiers); filled when the table arrives.
    private var tieredNames: Set<CommandName> = TieredCommand.names
    private(set) var shared: SharedUpstream!
    /// auth-mode proxy: the users and their ACLs, judged before anything goes upstream (nil: passthrough).
    let proxyAuth: ProxyAuth?
    /// Set when Redis demands AUTH and the proxy has no password: a shared connection would be
    /// an unauthenticated one that Redis's pre-AUTH limits can cut for everyone, so every client
    /// gets its own connection (and must AUTH on it, as it would direct).
    private var sharingDisabled = false
    private var shuttingDown = false
    private var onStopped: (() -> Void)?
    /// With lower tiers, clients accepted before the upstream's COMMAND reply was read wait here
    /// (their connections open, nothing read) until it was, or could not be: without the table
    /// a command outside the string table would pass to hot untiered (found through a TLS
    /// upstream, whose slower handshake let a client's first command win the race).
    private var parkedClients: [(fd: Int32, tls: TLSServer?)] = []
    private var tableSettled = false

    /// Tests: makes the connection an `UpstreamLink` talks to Redis on (an embedded one);
    /// nil: a TCP (or TLS) connection to `upstreamAddress`.
    var makeUpstreamConnection: (() -> Connection)?

    var frames: [RequestFrame] = []
    var spans: [ArgSpan] = []
    var replyEnds: [ReplyEnd] = []


    let tierSetup: TierSetup
    /// This loop's warm and cold tiers (nil: none configured, or they could not be built).
    private(set) var warm: Tier?
    private(set) var cold: Tier?
    /// The tiering state all loops share, and this loop's way to the lower tiers (nil: no lower
    /// tier configured, or none could be built: every command is hot's alone).
    let tiering: TieringCore
    private(set) var tierAccess: TierAccess?
    /// The proxy's own connection to hot (promotions, write-behind reads).
    private(set) var hot: HotClient!
    /// The second watcher `WatchGuard` asks whether a client's watched keys changed.
    private(set) lazy var watchProbe = ProbeConnection(hot: HotClient(worker: self), homeDB: config.upstream.db)
    /// Loop 0 drains the write-behind backlog and the deletes to retry.
    private var flusher: WriteBehindFlusher?

    /// This loop's counters (written only here) and every loop's, summed for INFO and TIERS STATS.
    let metrics: LoopMetrics
    let proxyMetrics: ProxyMetrics
    /// Samples the bytes waiting in client buffers once a second (INFO, /metrics).
    private var bufferSampler: Timer?
    /// Closes idle clients once a second when `timeout` is set.
    private var idleSweeper: Timer?

    init(index: Int, config: Config, upstreamAddress: SocketAddress?, clientCount: AtomicCounter,
         tierSetup: TierSetup, tiering: TieringCore, metrics: ProxyMetrics) {
        self.loop = EventLoop()
        self.proxyMetrics = metrics
        self.metrics = metrics.loops[index]
        self.tierSetup = tierSetup
        self.tiering = tiering
        self.index = index
        self.config = config
        self.upstreamAddress = upstreamAddress
        self.clientCount = clientCount
        self.credential = LoopCredential(tierSetup.upstreamCredential)
        self.proxyAuth = config.acl.mode == .proxy ? ProxyAuth(users: config.aclUsers) : nil
        self.clientTLS = config.clientTLS
        frames.reserveCapacity(256)
        spans.reserveCapacity(1024)
        replyEnds.reserveCapacity(256)
        shared = SharedUpstream(worker: self)
        hot = HotClient(worker: self)
    }

    /// Sessions whose output waits for the end of this loop pass (`flushLater`).
    private var toFlush: [ClientSession] = []
    private lazy var flushTask = DeferredTask(loop: loop) { [unowned self] in
        let sessions = toFlush
        toFlush.removeAll(keepingCapacity: true)
        for s in sessions { s.flushQueuedOutput() }
    }

    /// Writes `session`'s output once this loop pass's other events have run.
    func flushLater(_ session: ClientSession) {
        guard !session.flushQueued else { return }
        session.flushQueued = true
        toFlush.append(session)
        flushTask.schedule()
    }

    /// The TLS context new clients on `tls-port` get; replaced on this loop at SIGHUP.
    var clientTLS: TLSServer?

    /// Opens a listening socket on `address` (SO_REUSEPORT: every loop has its own); `tls`:
    /// clients there speak TLS (`tls-port`).
    func listen(on address: SocketAddress, tls: Bool = false) throws {
        listeners.append(try Listener(loop: loop, address: address, reusePort: true,
                                      backlog: Int32(config.tcpBacklog)) { [unowned self] fd in
            self.accept(fd, tls: tls ? self.clientTLS : nil)
        })
    }

    /// Runs on the loop's thread once it starts.
    func start() {
        tierSetup.upstreamCredential.watch(on: loop) { [unowned self] in self.credentialChanged() }
        loader = CommandTableLoader(worker: self)
        do {
            (warm, cold) = try tierSetup.tiers(for: loop)
        } catch {
            Log.warning("\(error)")
        }
        proxyMetrics.register(.warm, warm)
        proxyMetrics.register(.cold, cold)
        bufferSampler = Timer(loop: loop, millis: 1000, repeating: true) { [unowned self] in self.sampleBuffers() }
        if config.timeoutSeconds > 0 {
            idleSweeper = Timer(loop: loop, millis: 1000, repeating: true) { [unowned self] in self.closeIdleClients() }
        }
        if warm != nil || cold != nil {
            let warmLimit = tierSetup.cipher == nil ? TierAccess.warmItemLimit
                : EntryCipher.largestValue(sealedInItemOf: TierAccess.warmItemLimit)
            let access = TierAccess(core: tiering, loop: loop, warm: warm, cold: cold, metrics: metrics,
                                    warmItemLimit: warmLimit)
            tierAccess = access
            access.hot = hot
            access.hotDB = config.upstream.db
            if index == 0 {
                flusher = WriteBehindFlusher(access: access, hot: hot, homeDB: config.upstream.db,
                                             delayMillis: config.writeBehindDelayMillis)
                flusher?.start()
                FunctionFlags.refresh(hot: hot, scripts: tiering.scripts)
            }
        }
        if index == 0 {
            let (warm, cold, create) = (self.warm, self.cold, config.tiersCreate)
            tierSetup.resolveSecrets(on: loop) { errors in
                for e in errors { Log.warning("Tiers: could not resolve a secret: \(e)") }
                if create { TierBootstrap.create(warm: warm, cold: cold) }
            }
        }
    }

    private func accept(_ fd: Int32, tls: TLSServer?) {
        if shuttingDown { Glibc.close(fd); return }
        if clientCount.add(1) > config.maxclients {
            clientCount.add(-1)
            metrics.add(.clientsRejected)
            // Plain text would be garbage to a TLS client: it just sees the connection close.
            let message = "-ERR max number of clients reached\r\n"
            if tls == nil { _ = message.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) } }
            Glibc.close(fd)
            Log.verbose("Refused a client: max number of clients reached")
            return
        }
        metrics.add(.clientsAccepted)
        if tierAccess != nil && !tableSettled {
            parkedClients.append((fd, tls))
            return
        }
        startSession(fd, tls: tls)
    }

    private func startSession(_ fd: Int32, tls: TLSServer?) {
        let session = ClientSession(worker: self, fd: fd, tls: tls)
        if !session.isClosed { sessions[ObjectIdentifier(session)] = session }
        metrics.set(.clients, sessions.count)
    }

    /// Bytes waiting in this loop's client buffers, both directions (a walk over the sessions
    /// once a second, off the request path).
    private func sampleBuffers() {
        var bytes = 0
        for s in sessions.values {
            bytes += s.client.input.count + s.client.output.count
            if let d = s.dedicated { bytes += d.output.count + d.input.count }
        }
        metrics.set(.bufferBytes, bytes)
        metrics.set(.clients, sessions.count)
    }

    /// `timeout`: closes every client idle for more than that many seconds, as Redis's
    /// clientsCron does about once a second (with no reply: the connection just closes).
    private func closeIdleClients() {
        let now = loop.nowMillis
        let limit = Int64(config.timeoutSeconds) * 1000
        for s in Array(sessions.values) {
            guard let since = s.idleSince, now - since > limit else { continue }
            Log.verbose("Closing idle client")
            s.close()
        }
    }

    /// The upstream credential changed: connections waiting for it go on, and with a new Entra ID
    /// token every live connection re-authenticates (`EntraReauth`).
    private func credentialChanged() {
        guard let auth = credential.changed() else { return }
        EntraReauth.renew(self, auth, sessions: Array(sessions.values))
    }

    func sessionClosed(_ session: ClientSession) {
        sessions.removeValue(forKey: ObjectIdentifier(session))
        clientCount.add(-1)   // once per session: its close() runs once
        metrics.set(.clients, sessions.count)
        if shuttingDown && sessions.isEmpty { stopLoop() }
    }

    /// The command table is loaded, or the loader could not get it for now (it keeps trying):
    /// parked clients start.
    func commandTableSettled() {
        guard !tableSettled else { return }
        tableSettled = true
        let fds = parkedClients
        parkedClients = []
        for (fd, tls) in fds { startSession(fd, tls: tls) }
    }

    func upstreamRequiresClientAuth() {
        if !sharingDisabled && index == 0 && proxyAuth != nil {
            Log.warning("auth-mode proxy: the upstream requires AUTH; give the proxy its credentials in the upstream URL (clients' AUTH never reaches it)")
        } else if !sharingDisabled && index == 0 {
            Log.notice("Upstream requires AUTH and the proxy has no password: every client gets its own connection")
        }
        sharingDisabled = true
    }

    func commandTableLoaded(_ table: CommandTable) {
        sharingDisabled = false
        commandTable = table
        proxyAuth?.tableLoaded(table, logging: index == 0)
        shareable = Dictionary(uniqueKeysWithValues: table.allNames.map { name in
            (CommandName(name), Worker.mayShare(name, table))
        })
        tieredNames = TieredCommand.names.union(table.allNames.filter { name in
            guard let info = table.info(CommandName(name)) else { return false }
            let candidates = [info] + table.subcommands(of: name)
            return candidates.contains { WriteRule.kind($0) != .none }
        }.map { CommandName($0) })
        loader = nil
        if index == 0 { Log.verbose("Learned \(table.count) commands from the upstream's COMMAND reply") }
        commandTableSettled()
    }

    /// True if `frame` can ride the shared connection: it neither reads nor changes connection
    /// state and never blocks. Until the command table arrives, nothing is shared.
    func canShare(_ frame: RequestFrame) -> Bool {
        if sharingDisabled { return false }
        if shareable.isEmpty { return Worker.shareableBeforeTable.contains(frame.name) }
        return shareable[frame.name] ?? false
    }

    /// True if `name` may be tiered: worth copying its arguments to ask `TieredCommand.route`.
    func mayBeTiered(_ name: CommandName) -> Bool { tieredNames.contains(name) }

    /// Until the upstream's COMMAND reply has been read (Redis down at start, say), these common
    /// stateless commands may still share; everything else pins, which is always correct.
    private static let shareableBeforeTable: Set<CommandName> = Set([
        "ping", "echo", "get", "set", "mget", "mset", "del", "unlink", "exists", "expire", "pexpire", "ttl",
        "pttl", "incr", "incrby", "decr", "decrby", "append", "strlen", "getrange", "setrange", "type",
        "hget", "hset", "hmget", "hgetall", "hdel", "lpush", "rpush", "lpop", "rpop", "lrange", "llen",
        "sadd", "srem", "smembers", "sismember", "scard", "zadd", "zrem", "zrange", "zscore", "zcard",
    ].map { CommandName($0) })

    /// Connection-scoped commands (state, identity, modes, transactions) and anything that can
    /// block or that Redis marks admin/pubsub stay off the shared connection.
    private static let connectionScoped: Set<String> = [
        "auth", "hello", "select", "multi", "exec", "discard", "watch", "unwatch", "monitor", "client",
        "reset", "readonly", "readwrite", "asking", "wait", "waitaof", "sync", "psync", "replconf",
        "subscribe", "unsubscribe", "psubscribe", "punsubscribe", "ssubscribe", "sunsubscribe",
    ]

    /// Most shared replies one client may be owed at once (pipelines deeper than this pin).
    static let maxSharedInFlight = 32

    /// A container command (CONFIG, OBJECT, DEBUG …) carries its flags on its subcommands: it
    /// shares only if every subcommand could.
    static func mayShare(_ name: String, _ table: CommandTable) -> Bool {
        guard let info = table.info(CommandName(name)), !connectionScoped.contains(name) else { return false }
        let pinning: Set<String> = ["blocking", "pubsub", "admin", "no_multi"]
        guard info.flags.isDisjoint(with: pinning) else { return false }
        return table.subcommands(of: name).allSatisfy { $0.flags.isDisjoint(with: pinning) }
    }

    /// Stops accepting; each session closes once the replies it already asked for are written.
    func beginShutdown(then stopped: @escaping () -> Void) {
        shuttingDown = true
        onStopped = stopped
        listeners.forEach { $0.close() }
        listeners.removeAll()
        loader?.cancel()
        loader = nil
        if sessions.isEmpty { stopLoop(); return }
        for session in Array(sessions.values) { session.beginShutdown() }
    }

    /// Closes every session now (shutdown deadline passed).
    func forceClose() {
        for session in Array(sessions.values) { session.close() }
        stopLoop()
    }

    private func stopLoop() {
        bufferSampler?.cancel()
        idleSweeper?.cancel()
        flusher?.stop()
        hot.close()
        watchProbe.hot.close()
        shared.close()
        loop.stop()
        onStopped?()
        onStopped = nil
    }
}
