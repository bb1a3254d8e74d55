import Glibc
import Reactor
@testable import Tiers

/// Helpers for the key log and flusher tests: marks with many in flight, polling with deadlines.
enum Durable {
    static func key(_ i: Int, db: Int = 0) -> TierKey { TierKey(db: db, "key:\(i)") }

    /// One mark, waited for.
    static func mark(_ log: KeyLog, _ op: KeyLog.Op, _ key: TierKey, on harness: LoopHarness) throws -> Result<Void, TierError> {
        try harness.wait("mark \(op)") { done in
            switch op {
            case .dirty: log.markDirty(key, on: harness.loop, done)
            case .delete: log.markDeleted(key, on: harness.loop, done)
            }
        }
    }

    /// Marks `count` keys from `harness`'s loop with `inFlight` outstanding at a time; returns
    /// how many completions failed. Completions run on the loop, so the counters need no lock.
    @discardableResult
    static func markMany(_ log: KeyLog, on harness: LoopHarness, count: Int, inFlight: Int = 64,
                         seconds: Double = 60, _ item: @escaping (Int) -> (KeyLog.Op, TierKey)) throws -> Int {
        try harness.wait("\(count) marks", seconds: seconds) { (finish: @escaping (Int) -> Void) in
            var started = 0
            var finished = 0
            var failed = 0
            func startNext() {
                guard started < count else { return }
                let (op, key) = item(started)
                started += 1
                let done: (Result<Void, TierError>) -> Void = { result in
                    if case .failure = result { failed += 1 }
                    finished += 1
                    if finished == count { finish(failed) } else { startNext() }
                }
                switch op {
                case .dirty: log.markDirty(key, on: harness.loop, done)
                case .delete: log.markDeleted(key, on: harness.loop, done)
                }
            }
            if count == 0 { finish(0); return }
            for _ in 0..<min(inFlight, count) { startNext() }
        }
    }

    /// Polls `condition` every 2 ms until it holds or `seconds` pass; returns whether it held.
    static func waitUntil(seconds: Double = 20, _ condition: () -> Bool) -> Bool {
        let deadline = nowMillis() + Int64(seconds * 1000)
        while nowMillis() < deadline {
            if condition() { return true }
            usleep(2000)
        }
        return condition()
    }

    static func nowMillis() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    static func fileSize(_ path: String) -> Int {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : -1
    }

    static func truncateFile(_ path: String, to size: Int) {
        precondition(truncate(path, off_t(size)) == 0, "truncate \(path)")
    }

    /// The records on disk now, read as replay reads them.
    static func recordsOnDisk(_ path: String) throws -> [KeyLogRecord] {
        try KeyLogRecord.scan(try FileOps.readFile(path) ?? []).records
    }
}

/// A flusher living on its own loop; `shutdown` stops and drops it there.
final class FlusherRig {
    let harness: LoopHarness
    private(set) var flusher: Flusher!

    init(log: KeyLog, options: Flusher.Options, on harness: LoopHarness = LoopHarness(name: "flusher"),
         flush: @escaping Flusher.Flush) throws {
        self.harness = harness
        let loop = harness.loop
        flusher = try harness.wait("start flusher") { (done: @escaping (Flusher) -> Void) in
            let f = Flusher(log: log, loop: loop, options: options, flush: flush)
            f.start()
            done(f)
        }
    }

    /// Waits until the log has nothing pending and nothing is checked out.
    func drained(_ log: KeyLog, seconds: Double = 30) -> Bool {
        Durable.waitUntil(seconds: seconds) {
            let b = log.backlog
            return b.dirty == 0 && b.deletes == 0 && b.checkedOut == 0
        }
    }

    func shutdown() throws {
        var box = flusher
        flusher = nil
        // Stopped and released on its loop: its timers belong to that loop.
        _ = try harness.wait("stop flusher") { (done: @escaping (Bool) -> Void) in
            box?.stop()
            box = nil
            done(true)
        }
    }
}
