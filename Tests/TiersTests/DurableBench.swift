import Glibc
import Reactor
import Testing
@testable import Tiers

/// Key log append throughput, run by hand in a release build (not in CI):
/// `DURABLE_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter DurableBench`
@Suite(.enabled(if: getenv("DURABLE_BENCH") != nil, "set DURABLE_BENCH=1 to run"))
struct DurableBench {
    @Test func appendsPerSecond() throws {
        let dir = try TempDir()
        for (loops, inFlight, count) in [(1, 1, 2_000), (1, 64, 200_000), (4, 16, 200_000)] {
            let log = try KeyLog(path: dir.path + "/bench-\(loops)x\(inFlight).log")
            let harnesses = (0..<loops).map { LoopHarness(name: "bench-\($0)") }
            let start = Durable.nowMillis()
            var threads = [pthread_t]()
            for (n, harness) in harnesses.enumerated() {
                var thread = pthread_t()
                _ = startThread(&thread) {
                    _ = try? Durable.markMany(log, on: harness, count: count / loops, inFlight: inFlight, seconds: 300) {
                        (.dirty, Durable.key(n * count + $0))
                    }
                }
                threads.append(thread)
            }
            for t in threads { pthread_join(t, nil) }
            let millis = max(1, Durable.nowMillis() - start)
            let stats = log.stats
            log.close()
            print("key log: \(loops) loop(s) x \(inFlight) in flight: \(count) marks in \(millis) ms = "
                + "\(count * 1000 / Int(millis)) appends/s, \(stats.syncs) fdatasyncs "
                + "(\(stats.appends / max(1, stats.syncs)) appends per sync), \(stats.fileBytes) bytes")
            #expect(stats.appends == count)
        }
    }
}
