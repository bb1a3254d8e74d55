import Reactor
import Tiers

/// Probes hot (a connection, the proxy's AUTH/SELECT, PING) and each configured lower tier (its
/// `check`, with its credentials) every `health-probe-interval`, on the metrics thread's own loop
/// and tiers, so a slow tier never holds up a client loop. A tier that answers its probe but whose
/// requests since the previous probe failed, timed out or were throttled is "degraded".
final class HealthProbe {
    private let loop: EventLoop
    private let config: Config
    private let metrics: ProxyMetrics
    private let warm: Tier?
    private let cold: Tier?
    private var timer: Timer?
    private var hotProbe: HotPing?
    private var last: Totals?
    private let credential: UpstreamCredential

    init(loop: EventLoop, config: Config, metrics: ProxyMetrics, tierSetup: TierSetup) {
        self.loop = loop
        self.config = config
        self.metrics = metrics
        credential = tierSetup.upstreamCredential
        var built: (warm: Tier?, cold: Tier?) = (nil, nil)
        do { built = try tierSetup.tiers(for: loop) } catch { Log.warning("Health probe: \(error)") }
        (warm, cold) = built
        metrics.health.configure("hot", describe: "redis \(config.upstream.host):\(config.upstream.port)")
        if let warm { metrics.health.configure("warm", describe: warm.name) }
        if let cold { metrics.health.configure("cold", describe: cold.name) }
    }

    func start() {
        probe()
        timer = Timer(loop: loop, millis: config.healthProbeIntervalMillis, repeating: true) { [unowned self] in self.probe() }
    }

    func stop() { timer?.cancel(); hotProbe?.cancel() }

    private func probe() {
        let now = metrics.totals()
        let previous = last ?? now
        last = now
        let deadline = min(config.healthProbeIntervalMillis, max(config.upstreamConnectTimeoutMillis, 1000))
        let health = metrics.health
        if hotProbe == nil {
            let began = monotonicMicros()
            hotProbe = HotPing(loop: loop, config: config, credential: credential, timeoutMillis: deadline) { [unowned self] error in
                self.hotProbe = nil
                health.update("hot", state: error == nil ? .up : .down, error: error,
                              latencyMillis: Double(monotonicMicros() - began) / 1000)
            }
        }
        for (role, tier) in [(LowerTier.warm, warm), (.cold, cold)] {
            guard let tier else { continue }
            let began = monotonicMicros()
            let troubled = HealthProbe.troubles(role, now, previous)
            tier.check { result in
                let ms = Double(monotonicMicros() - began) / 1000
                switch result {
                case .success:
                    health.update(role.rawValue, state: troubled == nil ? .up : .degraded, error: troubled, latencyMillis: ms)
                case .failure(let e):
                    health.update(role.rawValue, state: .down, error: "\(e)", latencyMillis: ms)
                }
            }
        }
    }

    /// What went wrong with `tier`'s requests between two totals, if anything.
    static func troubles(_ tier: LowerTier, _ now: Totals, _ before: Totals) -> String? {
        let errors = now.requests(tier, outcome: .error) - before.requests(tier, outcome: .error)
        let timeouts = now.requests(tier, outcome: .timeout) - before.requests(tier, outcome: .timeout)
        let i = LoopMetrics.tierIndex(tier)
        let throttled = now.http[i].throttled - before.http[i].throttled
        let unavailable = now.http[i].unavailable - before.http[i].unavailable
        guard errors + timeouts + throttled + unavailable > 0 else { return nil }
        return "since the last probe: \(errors) errors, \(timeouts) timeouts, \(throttled) throttled (429), \(unavailable) unavailable (503)"
    }
}

/// One PING of hot on a connection of its own, after the proxy's AUTH/SELECT; reports nil (ok)
/// or what went wrong, once.
final class HotPing: ConnectionDelegate {
    private var connection: Connection?
    private var timer: Timer?
    private let expected: Int
    private var done: ((String?) -> Void)?

    init(loop: EventLoop, config: Config, credential: UpstreamCredential, timeoutMillis: Int,
         _ done: @escaping (String?) -> Void) {
        self.done = done
        var handshake: (bytes: [UInt8], replies: Int) = ([], 0)
        switch credential.handshake() {
        case .success(let h)?: handshake = h
        case .failure(let e)?:
            expected = 0
            loop.execute { [self] in finish("\(e)") }
            return
        case nil:
            expected = 0
            loop.execute { [self] in finish("the upstream credential is not there yet") }
            return
        }
        expected = handshake.replies + 1
        guard let address = try? SocketAddress.resolve(host: config.upstream.host, port: config.upstream.port).first else {
            loop.execute { [self] in finish("cannot resolve \(config.upstream.host)") }
            return
        }
        let c = Connection(loop: loop, connectingTo: address, tls: config.upstreamTLS)
        c.delegate = self
        c.output.append(handshake.bytes + UpstreamCommands.format(["PING"]))
        c.flush()
        connection = c
        timer = Timer(loop: loop, millis: timeoutMillis) { [unowned self] in
            self.finish("no answer from \(config.upstream.host):\(config.upstream.port) within \(timeoutMillis) ms")
        }
    }

    func cancel() { done = nil; finish(nil) }

    private func finish(_ error: String?) {
        timer?.cancel()
        timer = nil
        connection?.close()
        connection = nil
        let d = done
        done = nil
        d?(error)
    }

    func connectionEstablished(_ c: Connection) { c.flush() }
    func connectionDrained(_ c: Connection) {}
    func connectionClosed(_ c: Connection, error: String?) { finish("hot: " + (error ?? "connection closed")) }

    /// Simple replies only (+OK, +PONG, -ERR …): one line each. A NOAUTH to the PING is an
    /// answer too: Redis is up and wants each client to AUTH itself (the proxy has no password).
    func connectionReadable(_ c: Connection) {
        let text = c.input.copy(c.input.count, offset: 0)
        let lines = String(decoding: text, as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: true)
        for (i, line) in lines.enumerated() where line.hasPrefix("-") {
            if i == expected - 1 && line.hasPrefix("-NOAUTH") { break }
            finish("hot: " + line.dropFirst())
            return
        }
        if lines.count >= expected { finish(nil) }
    }
}
