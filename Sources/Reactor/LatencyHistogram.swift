/// A latency histogram in microseconds with log-linear buckets (four per power of two, as
/// HdrHistogram with two significant bits: at most 25% between a bucket's edges), written by one
/// loop and read by any thread (`LoopCells`). Recording is one bucket index computation and three
/// relaxed stores (the count is the buckets' sum, so a reader never sees them disagree). Every power of two is a bucket edge, so Prometheus buckets at 2^k µs are exact.
public final class LatencyHistogram: @unchecked Sendable {
    /// Values at or above 2^maxExponent µs (about 67 s) land in the last bucket.
    public static let maxExponent = 26
    public static let bucketCount = (maxExponent + 1) * 4
    private static let sumCell = bucketCount
    let cells = LoopCells(count: bucketCount + 1)

    public init() {}

    /// The bucket holding `micros`: values below 4 have their own; above, the exponent and the
    /// two bits after the leading one.
    @inline(__always)
    public static func bucket(_ micros: Int) -> Int {
        let v = max(0, micros)
        if v < 4 { return v }
        let e = Int.bitWidth - 1 - v.leadingZeroBitCount
        if e > maxExponent { return bucketCount - 1 }
        return e * 4 + ((v >> (e - 2)) & 3)
    }

    /// The smallest value of bucket `i` (its lower edge); the upper edge is `lowerEdge(i + 1)`.
    public static func lowerEdge(_ i: Int) -> Int {
        if i < 4 { return i }
        if i < 8 { return 4 }          // exponents 0 and 1 hold values 1...3 only: 4...7 stay empty
        let e = i / 4, sub = i % 4
        return (4 + sub) << (e - 2)
    }

    @inline(__always)
    public func record(micros: Int) {
        cells.add(LatencyHistogram.bucket(micros))
        cells.add(LatencyHistogram.sumCell, micros)
    }

    public var snapshot: Snapshot {
        let buckets = (0..<LatencyHistogram.bucketCount).map { cells[$0] }
        return Snapshot(buckets: buckets, count: buckets.reduce(0, +), sumMicros: cells[LatencyHistogram.sumCell])
    }

    /// A histogram's counts at one moment; snapshots of several loops add up.
    public struct Snapshot: Sendable, Equatable {
        public var buckets: [Int]
        public var count: Int
        public var sumMicros: Int

        public init(buckets: [Int] = Array(repeating: 0, count: LatencyHistogram.bucketCount),
                    count: Int = 0, sumMicros: Int = 0) {
            self.buckets = buckets; self.count = count; self.sumMicros = sumMicros
        }

        public static func + (a: Snapshot, b: Snapshot) -> Snapshot {
            Snapshot(buckets: zip(a.buckets, b.buckets).map { $0 + $1 }, count: a.count + b.count,
                     sumMicros: a.sumMicros + b.sumMicros)
        }

        public static func - (a: Snapshot, b: Snapshot) -> Snapshot {
            Snapshot(buckets: zip(a.buckets, b.buckets).map { max(0, $0 - $1) }, count: max(0, a.count - b.count),
                     sumMicros: max(0, a.sumMicros - b.sumMicros))
        }

        /// Recorded values below `micros` (exact when `micros` is a bucket edge, e.g. a power of two).
        public func countBelow(_ micros: Int) -> Int {
            var n = 0
            for i in 0..<buckets.count where LatencyHistogram.lowerEdge(i + 1) <= micros { n += buckets[i] }
            return n
        }

        /// The `q` quantile (0...1) in µs: the upper edge of the bucket it falls in (0 when empty).
        public func quantile(_ q: Double) -> Int {
            let total = buckets.reduce(0, +)
            guard total > 0 else { return 0 }
            let rank = max(1, Int((q * Double(total)).rounded(.up)))
            var seen = 0
            for (i, n) in buckets.enumerated() {
                seen += n
                if seen >= rank { return LatencyHistogram.lowerEdge(i + 1) }
            }
            return LatencyHistogram.lowerEdge(buckets.count)
        }
    }
}
