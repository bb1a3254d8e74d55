import Reactor
import Glibc

/// Starts one worker per thread, listens on every bind address in each, and runs the main thread's
/// loop for signals. SIGTERM/SIGINT: stop accepting, let sessions flush what they owe, exit 0 within
/// `shutdown-timeout`.
final class Server {
    let config: Config
    private var workers: [Worker] = []
    private var threads: [LoopThread] = []
    private let mainLoop = EventLoop()
    private var signalWatchers: [SignalWatcher] = []
    private let stoppedWorkers = AtomicCounter()
    private var deadline: Timer?
    private var stopping = false

    private let tierSetup: TierSetup
    private var tiering: TieringCore!
    private var metricsServer: MetricsServer?
    private var startupCheck: HotPing?
    private var entraToken: EntraTokenSource?
    private let environment: [String: String]

    init(config: Config, environment: [String: String]) throws {
        self.config = config
        self.environment = environment
        tierSetup = try TierSetup(config: config, environment: environment)
    }

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        let upstream: SocketAddress?
        do {
            upstream = try SocketAddress.resolve(host: config.upstream.host, port: config.upstream.port).first
        } catch {
            Log.warning("\(error); clients will get errors until it resolves (restart to retry)")
            upstream = nil
        }
        let addresses = try bindAddresses(port: config.port, tls: false) + bindAddresses(port: config.tlsPort, tls: true)
        if addresses.isEmpty { throw ConfigError("port 0 and no tls-port: nothing to listen on") }
        let clientCount = AtomicCounter()
        tiering = TieringCore(config: config)
        let metrics = ProxyMetrics(loops: config.effectiveThreads, clientCount: clientCount, tiering: tiering)
        for i in 0..<config.effectiveThreads {
            let w = Worker(index: i, config: config, upstreamAddress: upstream, clientCount: clientCount,
                           tierSetup: tierSetup, tiering: tiering, metrics: metrics)
            for (address, optional, tls) in addresses {
                do { try w.listen(on: address, tls: tls) } catch {
                    if optional { if i == 0 { Log.verbose("Skipping optional bind \(address): \(error)") } ; continue }
                    throw error
                }
            }
            workers.append(w)
        }
        if config.metricsPort > 0 {
            metricsServer = try MetricsServer(config: config, metrics: metrics, tierSetup: tierSetup)
        }
        writePidfile()
        let ports = (config.port == 0 ? [] : ["port \(config.port)"]) + (config.tlsPort == 0 ? [] : ["tls-port \(config.tlsPort)"])
        Log.notice("tierproxy \(tierproxyVersion) started, pid=\(getpid()), \(workers.count) threads, \(ports.joined(separator: ", ")), upstream \(config.upstream)")
        if let tls = config.clientTLS { Log.notice("TLS for clients on port \(config.tlsPort): certificate \(tls.certificateSummary)") }
        Log.notice("Tiers: warm \(tierSetup.config.warm), cold \(tierSetup.config.cold)")
        if let cipher = tierSetup.cipher { Log.notice("Tiers: every lower-tier entry is encrypted (\(cipher))") }
        for w in workers {
            w.loop.execute { w.start() }
            threads.append(LoopThread(loop: w.loop, name: "loop-\(w.index)"))
        }
        if config.port != 0 { Log.notice("Ready to accept connections tcp") }
        if config.tlsPort != 0 { Log.notice("Ready to accept connections tls") }
        startEntraToken()
        checkUpstream()
        for sig in [SIGTERM, SIGINT] {
            signalWatchers.append(SignalWatcher(loop: mainLoop, signal: sig) { [unowned self] in self.shutdown(sig) })
        }
        signalWatchers.append(SignalWatcher(loop: mainLoop, signal: SIGHUP) { [unowned self] in
            self.reloadClientTLS()
            self.reloadSecrets()
        })
        mainLoop.run()
        threads.forEach { $0.join() }
        entraToken?.stop()
        tierSetup.close()
        tiering.close()
        if !config.pidfile.isEmpty { unlink(config.pidfile) }
        Log.notice("tierproxy is now ready to exit, bye bye...")
    }

    /// One PING of the upstream at start (AUTH/SELECT first, TLS handshake and certificate check
    /// first of all), so that a wrong CA, host name, password or address is one clear log line
    /// now, not only an error reply to each client later. The proxy runs either way: Redis may
    /// come up, or get its certificate fixed, after the proxy.
    private func checkUpstream() {
        let credential = tierSetup.upstreamCredential
        if credential.handshake() == nil {
            // Waiting for Key Vault or the token endpoint: check once the credential is there.
            var waited = false
            credential.watch(on: mainLoop) { [unowned self] in
                if !waited && credential.handshake() != nil { waited = true; self.checkUpstream() }
            }
            return
        }
        let how = UpstreamTLS.describe(config)
        startupCheck = HotPing(loop: mainLoop, config: config, credential: credential, timeoutMillis: max(config.upstreamConnectTimeoutMillis, 1000)) {
            [unowned self] error in
            self.startupCheck = nil
            if let error {
                Log.warning("Upstream check failed: \(self.config.upstream) (\(how)): \(error)")
            } else {
                Log.notice("Upstream check ok: \(self.config.upstream) answered PING (\(how))")
            }
        }
    }

    /// `upstream-auth entra`: the upstream's tokens come from the main loop.
    private func startEntraToken() {
        guard config.upstreamEntra else { return }
        if !config.upstream.tls {
            Log.warning("upstream-auth entra over plain TCP: Azure accepts Entra ID tokens only over TLS (use rediss://)")
        }
        if config.upstream.password != nil {
            Log.warning("upstream-auth entra: the password in the upstream URL is not used")
        }
        let source = EntraTokenSource(loop: mainLoop, config: config, credential: tierSetup.upstreamCredential,
                                      environment: environment)
        Log.notice("Upstream authentication: Entra ID, \(source.kind), scope \(EntraTokenSource.scope)")
        entraToken = source
        source.start()
    }

    /// `bind` addresses resolved for `port` (none for 0), `tls` for tls-port's; a leading "-"
    /// marks one that may be missing (like Redis's "-::1").
    private func bindAddresses(port: Int, tls: Bool) throws -> [(SocketAddress, optional: Bool, tls: Bool)] {
        var out: [(SocketAddress, optional: Bool, tls: Bool)] = []
        if port == 0 { return out }
        for entry in config.bind {
            let optional = entry.hasPrefix("-")
            var host = optional ? String(entry.dropFirst()) : entry
            if host == "*" { host = "0.0.0.0" } else if host == "::*" { host = "::" }
            do {
                for a in try SocketAddress.resolve(host: host, port: port, passive: true) { out.append((a, optional, tls)) }
            } catch {
                if !optional { throw ConfigError("cannot bind \(entry): \(error)") }
            }
        }
        if out.isEmpty { throw ConfigError("no address to listen on") }
        return out
    }

    private func shutdown(_ sig: Int32) {
        if stopping { return }
        stopping = true
        Log.notice("Received \(sig == SIGINT ? "SIGINT" : "SIGTERM") scheduling shutdown...")
        let total = workers.count
        for w in workers {
            w.loop.execute { [unowned self] in
                w.beginShutdown {
                    if self.stoppedWorkers.add(1) == total { self.mainLoop.execute { self.mainLoop.stop() } }
                }
            }
        }
        deadline = Timer(loop: mainLoop, millis: config.shutdownTimeoutSeconds * 1000) { [unowned self] in
            Log.warning("Shutdown timeout reached; closing remaining clients")
            for w in self.workers { w.loop.execute { w.forceClose() } }
        }
    }

    /// SIGHUP: the clients' certificate, key and CAs read again into a new context, which new
    /// handshakes on every loop use; connected clients keep the one they shook hands with. One
    /// that does not load changes nothing (as Redis keeps its TLS setup on a failed CONFIG SET).
    private func reloadClientTLS() {
        guard config.tlsPort != 0 else { return }
        do {
            let tls = try TLSServer(settings: config.tlsSettings)
            for w in workers { w.loop.execute { w.clientTLS = tls } }
            Log.notice("Received SIGHUP: TLS certificates for clients reloaded: \(tls.certificateSummary)")
        } catch {
            Log.warning("Received SIGHUP: TLS certificates for clients not reloaded, the current ones stay: \(error)")
        }
    }

    /// SIGHUP: fetch `keyvault://` secrets again (rotated keys), on the first loop.
    private func reloadSecrets() {
        guard let first = workers.first else { return }
        Log.notice("Received SIGHUP: resolving Key Vault secrets again")
        first.loop.execute { [tierSetup] in
            tierSetup.resolveSecrets(on: first.loop) { errors in
                if errors.isEmpty { Log.notice("Secrets resolved") }
                for e in errors { Log.warning("Tiers: could not resolve a secret: \(e)") }
            }
        }
    }

    private func writePidfile() {
        guard !config.pidfile.isEmpty else { return }
        let fd = open(config.pidfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { Log.warning("Failed to write PID file: \(String(cString: strerror(errno)))"); return }
        let text = "\(getpid())\n"
        _ = text.withCString { write(fd, $0, strlen($0)) }
        close(fd)
    }
}
