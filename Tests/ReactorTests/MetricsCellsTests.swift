import Testing
import Glibc
@testable import Reactor

/// The metrics primitives: single-writer cells read from another thread, and the log-linear
/// latency histogram's buckets, edges and quantiles.
@Suite struct MetricsCellsTests {
    @Test func cellsAddSetAndReadBack() {
        let cells = LoopCells(count: 3)
        cells.add(0)
        cells.add(0, 41)
        cells.add(1, -2)
        cells.set(2, 7)
        #expect(cells.values() == [42, -2, 7])
    }

    @Test func aReaderOnAnotherThreadSeesEveryIncrementOnceTheWriterStops() {
        let cells = LoopCells(count: 1)
        let done = AtomicCounter()
        var highest = 0
        let reader = LoopThread(name: "reader") { loop in
            // Reads while the writer runs: never more than was written, never going back.
            var last = 0
            while done.value == 0 {
                let v = cells[0]
                if v < last { highest = -1; break }
                last = v
            }
            highest = max(highest, last)
            loop.execute { loop.stop() }     // runs once the loop does (a stop before run is lost)
        }
        for _ in 0..<2_000_000 { cells.add(0) }
        done.add(1)
        reader.join()
        #expect(highest >= 0 && highest <= 2_000_000)
        #expect(cells[0] == 2_000_000)
    }

    @Test func bucketsHaveEdgesAtEveryPowerOfTwo() {
        for v in [0, 1, 2, 3, 4, 5, 7, 8, 100, 1000, 65_535, 1 << 20] {
            let b = LatencyHistogram.bucket(v)
            #expect(LatencyHistogram.lowerEdge(b) <= v && v < LatencyHistogram.lowerEdge(b + 1), "\(v) in bucket \(b)")
        }
        for k in 2...25 {
            #expect(LatencyHistogram.lowerEdge(LatencyHistogram.bucket(1 << k)) == 1 << k)
        }
        #expect(LatencyHistogram.bucket(Int.max) == LatencyHistogram.bucketCount - 1)
        #expect(LatencyHistogram.bucket(-5) == 0)
        // Relative width stays within 25%.
        for b in 8..<(LatencyHistogram.bucketCount - 1) {
            let lo = Double(LatencyHistogram.lowerEdge(b)), hi = Double(LatencyHistogram.lowerEdge(b + 1))
            #expect((hi - lo) / lo <= 0.25)
        }
    }

    @Test func quantilesAndCountsBelow() {
        let h = LatencyHistogram()
        for _ in 0..<900 { h.record(micros: 100) }
        for _ in 0..<90 { h.record(micros: 1000) }
        for _ in 0..<10 { h.record(micros: 50_000) }
        let s = h.snapshot
        #expect(s.count == 1000 && s.sumMicros == 900 * 100 + 90 * 1000 + 10 * 50_000)
        #expect((100...125).contains(s.quantile(0.5)))
        #expect((1000...1250).contains(s.quantile(0.95)))
        #expect((50_000...62_500).contains(s.quantile(0.999)))
        #expect(s.countBelow(128) == 900 && s.countBelow(1024) == 990 && s.countBelow(1 << 16) == 1000)
        let twice = s + s
        #expect(twice.count == 2000 && (twice - s) == s)
        #expect(LatencyHistogram.Snapshot().quantile(0.99) == 0)
    }
}
