import Reactor
import Tiers
import Glibc

/// What a tier operation came to, for `tierproxy_tier_requests_total{result}`.
enum TierOutcome: Int, CaseIterable {
    case hit, miss, ok, error, timeout
    var label: String { ["hit", "miss", "ok", "error", "timeout"][rawValue] }
}

/// The tier operations the request path starts (through `TierAccess`).
enum TierOp: Int, CaseIterable {
    case get, put, delete
    var label: String { ["get", "put", "delete"][rawValue] }
}

/// One loop's counters and histograms. Only that loop writes them (no lock, no atomic
/// read-modify-write: `LoopCells`); a scrape or INFO on any thread reads and sums every loop's.
final class LoopMetrics: @unchecked Sendable {
    enum Cell: Int, CaseIterable {
        /// Requests sent on the shared upstream connection (clients' and the proxy's own).
        case sharedRequests
        /// Requests of pinned clients (counted by ClientSession, see the README's metrics section).
        case pinnedRequests
        case clientsAccepted, clientsRejected
        /// Upstream connections opened, shared ones opened again after a failure, and failures.
        case upstreamConnections, upstreamReconnects, upstreamFailures
        /// Gauges: open upstream connections (pinned clients', shared, the proxy's own for
        /// promotions and write-behind reads), bytes in client buffers, clients on this loop.
        case pinnedLinks, sharedLinks, proxyLinks, bufferBytes, clients
    }

    let loopIndex: Int
    let cells = LoopCells(count: Cell.allCases.count)
    /// Per (tier, op, outcome): tier 0 = warm, 1 = cold.
    let tierRequests = LoopCells(count: 2 * TierOp.allCases.count * TierOutcome.allCases.count)
    /// Per (tier, op).
    let tierLatency: [LatencyHistogram] = (0..<(2 * TierOp.allCases.count)).map { _ in LatencyHistogram() }
    /// Per tier: operations in flight (a gauge), value bytes read, value bytes written.
    let tierInflight = LoopCells(count: 2)
    let tierBytes = LoopCells(count: 4)
    /// Per tier: values found there and promoted to hot.
    let tierPromotions = LoopCells(count: 2)

    init(loopIndex: Int) { self.loopIndex = loopIndex }

    @inline(__always) func add(_ cell: Cell, _ delta: Int = 1) { cells.add(cell.rawValue, delta) }
    @inline(__always) func set(_ cell: Cell, _ value: Int) { cells.set(cell.rawValue, value) }
    func value(_ cell: Cell) -> Int { cells[cell.rawValue] }

    static func tierIndex(_ tier: LowerTier) -> Int { tier == .warm ? 0 : 1 }

    func recordTier(_ tier: LowerTier, _ op: TierOp, _ outcome: TierOutcome, micros: Int) {
        let t = LoopMetrics.tierIndex(tier)
        tierRequests.add((t * TierOp.allCases.count + op.rawValue) * TierOutcome.allCases.count + outcome.rawValue)
        tierLatency[t * TierOp.allCases.count + op.rawValue].record(micros: micros)
    }

    func tierStarted(_ tier: LowerTier) { tierInflight.add(LoopMetrics.tierIndex(tier)) }
    func tierFinished(_ tier: LowerTier, read: Int, written: Int) {
        let t = LoopMetrics.tierIndex(tier)
        tierInflight.add(t, -1)
        if read > 0 { tierBytes.add(t * 2, read) }
        if written > 0 { tierBytes.add(t * 2 + 1, written) }
    }

    func promoted(_ tier: LowerTier, _ count: Int = 1) { tierPromotions.add(LoopMetrics.tierIndex(tier), count) }

    func tierCount(_ tier: LowerTier, _ op: TierOp, _ outcome: TierOutcome) -> Int {
        let t = LoopMetrics.tierIndex(tier)
        return tierRequests[(t * TierOp.allCases.count + op.rawValue) * TierOutcome.allCases.count + outcome.rawValue]
    }

    func latency(_ tier: LowerTier, _ op: TierOp) -> LatencyHistogram.Snapshot {
        tierLatency[LoopMetrics.tierIndex(tier) * TierOp.allCases.count + op.rawValue].snapshot
    }
}

/// Microseconds on the monotonic clock (a vDSO call; used only around tier operations).
func monotonicMicros() -> Int {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1_000_000 + ts.tv_nsec / 1000
}
