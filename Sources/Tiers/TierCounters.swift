/// Request counters for one HTTP-backed tier on one loop (for INFO, `TIERS STATS` and /metrics).
/// Touched only on the tier's loop; read a `snapshot` there and sum snapshots across loops.
public final class TierCounters {
    public struct Snapshot: Equatable, Sendable {
        /// HTTP attempts sent (first tries and retries).
        public var requests = 0
        /// Attempts that were retries.
        public var retries = 0
        /// Operations that ended in an error for the caller (after any retries).
        public var failures = 0
        /// Responses 429 (throttled) seen, retried or not.
        public var throttled = 0
        /// Sum of attempt latencies, milliseconds (mean = latencyMillisTotal / requests).
        public var latencyMillisTotal: Int64 = 0

        public init() {}

        public static func + (a: Snapshot, b: Snapshot) -> Snapshot {
            var s = a
            s.requests += b.requests; s.retries += b.retries; s.failures += b.failures
            s.throttled += b.throttled; s.latencyMillisTotal += b.latencyMillisTotal
            return s
        }
    }

    public private(set) var snapshot = Snapshot()
    public init() {}

    func recordAttempt(retry: Bool) {
        snapshot.requests += 1
        if retry { snapshot.retries += 1 }
    }
    func recordLatency(_ millis: Int64) { snapshot.latencyMillisTotal += millis }
    func recordThrottle() { snapshot.throttled += 1 }
    func recordFailure() { snapshot.failures += 1 }
}
