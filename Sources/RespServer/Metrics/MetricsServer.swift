import Reactor
import Tiers
import Glibc

/// The metrics and health endpoint (`metrics-port`): libevent's evhttp on a thread and event base
/// of its own, with the health probes on the same loop. Nothing here runs on a client loop.
///   /metrics         Prometheus text (`PrometheusText`)
///   /healthz         200 while the process serves
///   /readyz          200 when hot and every configured lower tier answered their last probe, else 503
///   /healthz/memory  {"hot": {...}, "warm": {...}, "cold": {...}}: state, last error, latency
final class MetricsServer {
    private var thread: LoopThread?
    private let started = monotonicMicros()

    /// Binds now (so a port in use fails at start, like `port`), then serves on its own thread.
    init(config: Config, metrics: ProxyMetrics, tierSetup: TierSetup) throws {
        var failure: Error?
        var bound = 0
        let ready = AtomicCounter()
        let startedAt = started
        thread = LoopThread(name: "metrics") { loop in
            do {
                var server: HTTPServer?
                let probe = HealthProbe(loop: loop, config: config, metrics: metrics, tierSetup: tierSetup)
                server = try HTTPServer(loop: loop, host: config.metricsBind, port: config.metricsPort) { path in
                    MetricsServer.respond(path, metrics: metrics, startedAt: startedAt)
                }
                bound = server?.port ?? 0
                probe.start()
                MetricsServer.keep = (server, probe)
            } catch {
                failure = error
                loop.stop()
            }
            ready.add(1)
        }
        while ready.value == 0 { usleep(1000) }   // the thread's setup takes microseconds
        if let failure { thread?.join(); throw ConfigError("\(failure)") }
        Log.notice("Metrics and health endpoint on http://\(config.metricsBind):\(bound)/metrics")
    }

    /// The metrics thread's server and prober live as long as the process.
    nonisolated(unsafe) private static var keep: (HTTPServer?, HealthProbe)?

    static func respond(_ path: String, metrics: ProxyMetrics, startedAt: Int) -> HTTPServer.Response {
        switch path {
        case "/metrics":
            let text = PrometheusText.render(metrics, keyLog: metrics.tiering.keyLog, flusher: metrics.tiering.flusher,
                                             uptimeSeconds: (monotonicMicros() - startedAt) / 1_000_000)
            return .init(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: Array(text.utf8))
        case "/healthz":
            return .init(status: 200, contentType: "text/plain", body: Array("ok\n".utf8))
        case "/readyz":
            let (ok, why) = metrics.health.ready
            return .init(status: ok ? 200 : 503, contentType: "text/plain", body: Array((why + "\n").utf8))
        case "/healthz/memory":
            return .init(status: 200, contentType: "application/json", body: Array((metrics.health.json() + "\n").utf8))
        default:
            return .init(status: 404, contentType: "text/plain", body: Array("not found: /metrics, /healthz, /readyz, /healthz/memory\n".utf8))
        }
    }
}
