import Reactor
import Tiers
import Synchronization

/// Every loop's metrics, summed when someone looks (/metrics, INFO, TIERS STATS): the request
/// path only ever writes its own loop's cells. `TIERS RESETSTAT` keeps a baseline that INFO and
/// TIERS STATS subtract; /metrics stays monotonic, as Prometheus counters must.
final class ProxyMetrics: @unchecked Sendable {
    let loops: [LoopMetrics]
    let clientCount: AtomicCounter
    let tiering: TieringCore
    let health = TierHealth()
    /// Each loop's HTTP-backed tiers (registered by the loop once it built them).
    private let httpTiers = Mutex<[(LowerTier, TierCounters)]>([])
    private let baseline = Mutex<Totals?>(nil)

    init(loops: Int, clientCount: AtomicCounter, tiering: TieringCore) {
        self.loops = (0..<loops).map { LoopMetrics(loopIndex: $0) }
        self.clientCount = clientCount
        self.tiering = tiering
    }

    func register(_ role: LowerTier, _ tier: Tier?) {
        guard let counted = tier as? CountedTier else { return }
        httpTiers.withLock { $0.append((role, counted.counters)) }
    }

    /// Everything counted since start.
    func totals() -> Totals {
        var t = Totals()
        for loop in loops {
            for (i, v) in loop.cells.values().enumerated() { t.cells[i] += v }
            for (i, v) in loop.tierRequests.values().enumerated() { t.tierRequests[i] += v }
            for (i, v) in loop.tierInflight.values().enumerated() { t.tierInflight[i] += v }
            for (i, v) in loop.tierBytes.values().enumerated() { t.tierBytes[i] += v }
            for (i, v) in loop.tierPromotions.values().enumerated() { t.tierPromotions[i] += v }
            for i in 0..<t.latency.count { t.latency[i] = t.latency[i] + loop.tierLatency[i].snapshot }
            t.loopRequests.append(loop.value(.sharedRequests) + loop.value(.pinnedRequests))
        }
        for (role, counters) in httpTiers.withLock({ $0 }) {
            let i = LoopMetrics.tierIndex(role)
            t.http[i] = t.http[i] + counters.snapshot
        }
        t.tiering = tiering.stats.all.map { ($0.0, $0.1.value) }
        return t
    }

    /// Totals since the last `TIERS RESETSTAT` (or since start).
    func sinceReset() -> Totals {
        let now = totals()
        guard let base = baseline.withLock({ $0 }) else { return now }
        return now.minus(base)
    }

    func resetStats() {
        let now = totals()
        baseline.withLock { $0 = now }
    }
}

/// Sums of every loop's counters at one moment.
struct Totals {
    var cells = [Int](repeating: 0, count: LoopMetrics.Cell.allCases.count)
    var tierRequests = [Int](repeating: 0, count: 2 * TierOp.allCases.count * TierOutcome.allCases.count)
    var latency = [LatencyHistogram.Snapshot](repeating: .init(), count: 2 * TierOp.allCases.count)
    var tierInflight = [0, 0]
    /// warm read, warm written, cold read, cold written.
    var tierBytes = [0, 0, 0, 0]
    var tierPromotions = [0, 0]
    var http = [TierCounters.Snapshot(), TierCounters.Snapshot()]
    var loopRequests: [Int] = []
    var tiering: [(String, Int)] = []

    subscript(_ cell: LoopMetrics.Cell) -> Int { cells[cell.rawValue] }

    func requests(_ tier: LowerTier, _ op: TierOp, _ outcome: TierOutcome) -> Int {
        tierRequests[(LoopMetrics.tierIndex(tier) * TierOp.allCases.count + op.rawValue) * TierOutcome.allCases.count + outcome.rawValue]
    }
    func requests(_ tier: LowerTier, outcome: TierOutcome) -> Int {
        TierOp.allCases.reduce(0) { $0 + requests(tier, $1, outcome) }
    }
    func latency(_ tier: LowerTier, _ op: TierOp) -> LatencyHistogram.Snapshot {
        latency[LoopMetrics.tierIndex(tier) * TierOp.allCases.count + op.rawValue]
    }
    /// Every op of `tier` in one histogram.
    func latency(_ tier: LowerTier) -> LatencyHistogram.Snapshot {
        TierOp.allCases.reduce(LatencyHistogram.Snapshot()) { $0 + latency(tier, $1) }
    }
    func tiering(_ name: String) -> Int { tiering.first { $0.0 == name }?.1 ?? 0 }

    /// Counters minus `base`; gauges (connections open, buffer bytes, in flight) stay as they are.
    func minus(_ base: Totals) -> Totals {
        var t = self
        let gauges: Set<LoopMetrics.Cell> = [.pinnedLinks, .sharedLinks, .proxyLinks, .bufferBytes, .clients]
        for c in LoopMetrics.Cell.allCases where !gauges.contains(c) { t.cells[c.rawValue] -= base.cells[c.rawValue] }
        t.tierRequests = zip(tierRequests, base.tierRequests).map { $0 - $1 }
        t.latency = zip(latency, base.latency).map { $0 - $1 }
        t.tierBytes = zip(tierBytes, base.tierBytes).map { $0 - $1 }
        t.tierPromotions = zip(tierPromotions, base.tierPromotions).map { $0 - $1 }
        for i in 0..<2 {
            var h = http[i]
            let b = base.http[i]
            h.requests -= b.requests; h.retries -= b.retries; h.failures -= b.failures
            h.throttled -= b.throttled; h.unavailable -= b.unavailable; h.latencyMillisTotal -= b.latencyMillisTotal
            t.http[i] = h
        }
        t.loopRequests = loopRequests.enumerated().map { $0.element - (base.loopRequests.count > $0.offset ? base.loopRequests[$0.offset] : 0) }
        t.tiering = tiering.map { ($0.0, $0.1 - base.tiering($0.0)) }
        return t
    }
}
