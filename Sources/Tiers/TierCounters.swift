import Reactor

/// Request counters for one HTTP-backed tier on one loop (for INFO, `TIERS STATS` and /metrics).
/// Written only on the tier's loop; `snapshot` may be read from any thread (the cells are
/// single-writer, see `LoopCells`), and snapshots of every loop's tier add up.
public final class TierCounters: @unchecked Sendable {
    public struct Snapshot: Equatable, Sendable {
        /// HTTP attempts sent (first tries and retries).
        public var requests = 0
        /// Attempts that were retries.
        public var retries = 0
        /// Operations that ended in an error for the caller (after any retries).
        public var failures = 0
        /// Responses 429 (throttled) seen, retried or not.
        public var throttled = 0
        /// Responses 503 (service unavailable) seen, retried or not.
        public var unavailable = 0
        /// Sum of attempt latencies, milliseconds (mean = latencyMillisTotal / requests).
        public var latencyMillisTotal: Int64 = 0

        public init() {}

        public static func + (a: Snapshot, b: Snapshot) -> Snapshot {
            var s = a
            s.requests += b.requests; s.retries += b.retries; s.failures += b.failures
            s.throttled += b.throttled; s.unavailable += b.unavailable
            s.latencyMillisTotal += b.latencyMillisTotal
            return s
        }
    }

    private enum Cell: Int, CaseIterable { case requests, retries, failures, throttled, unavailable, latency }
    private let cells = LoopCells(count: Cell.allCases.count)

    public init() {}

    public var snapshot: Snapshot {
        var s = Snapshot()
        s.requests = cells[Cell.requests.rawValue]
        s.retries = cells[Cell.retries.rawValue]
        s.failures = cells[Cell.failures.rawValue]
        s.throttled = cells[Cell.throttled.rawValue]
        s.unavailable = cells[Cell.unavailable.rawValue]
        s.latencyMillisTotal = Int64(cells[Cell.latency.rawValue])
        return s
    }

    func recordAttempt(retry: Bool) {
        cells.add(Cell.requests.rawValue)
        if retry { cells.add(Cell.retries.rawValue) }
    }
    func recordLatency(_ millis: Int64) { cells.add(Cell.latency.rawValue, Int(millis)) }
    func recordStatus(_ status: Int) {
        if status == 429 { cells.add(Cell.throttled.rawValue) }
        if status == 503 { cells.add(Cell.unavailable.rawValue) }
    }
    func recordFailure() { cells.add(Cell.failures.rawValue) }
}

/// A tier that counts its HTTP requests (Cosmos DB, Blob Storage).
public protocol CountedTier: Tier {
    var counters: TierCounters { get }
}
extension CosmosTier: CountedTier {}
extension BlobTier: CountedTier {}
