import Glibc
import Reactor
import Testing
@testable import Tiers

/// The flusher against closures standing in for the proxy: coalescing, retries, limits, and a
/// lower tier that never ends older than hot while writes race the flushes.
@Suite struct DurableFlusherTests {
    static func options(maxInFlight: Int = 64) -> Flusher.Options {
        var o = Flusher.Options()
        o.maxInFlight = maxInFlight
        o.intervalMillis = 5
        o.retryBaseMillis = 1
        o.retryMaxMillis = 10
        return o
    }

    @Test func athousandWritesOfOneKeyAreOneFlush() throws {
        let dir = try TempDir()
        let log = try KeyLog(path: dir.path + "/keys.log")
        defer { log.close() }
        let marker = LoopHarness(name: "marker")
        let k = Durable.key(1)
        try #require(try Durable.markMany(log, on: marker, count: 1000) { _ in (.dirty, k) } == 0)
        #expect(log.backlog.dirty == 1)

        let seen = Recorder()
        let rig = try FlusherRig(log: log, options: Self.options()) { op, key, done in
            seen.note(op, key)
            done(.success(()))
        }
        #expect(rig.drained(log))
        #expect(seen.calls == [Call(op: .dirty, key: k)])
        #expect(rig.flusher.counters.flushed == 1)
        try rig.shutdown()
    }

    @Test func aDeleteAfterADirtyIsFlushedAsOneDelete() throws {
        let dir = try TempDir()
        let log = try KeyLog(path: dir.path + "/keys.log")
        defer { log.close() }
        let marker = LoopHarness(name: "marker")
        let k = Durable.key(2)
        try Durable.mark(log, .dirty, k, on: marker).get()
        try Durable.mark(log, .delete, k, on: marker).get()
        let seen = Recorder()
        let rig = try FlusherRig(log: log, options: Self.options()) { op, key, done in
            seen.note(op, key)
            done(.success(()))
        }
        #expect(rig.drained(log))
        #expect(seen.calls == [Call(op: .delete, key: k)])
        try rig.shutdown()
    }

    @Test func aFlakyTierIsRetriedUntilEveryKeyLands() throws {
        let dir = try TempDir()
        let path = dir.path + "/keys.log"
        var log = try KeyLog(path: path)
        let marker = LoopHarness(name: "marker")
        try #require(try Durable.markMany(log, on: marker, count: 200) { (.dirty, Durable.key($0)) } == 0)

        let seen = Recorder()
        var attempts = [TierKey: Int]()  // flusher loop only
        let rig = try FlusherRig(log: log, options: Self.options()) { op, key, done in
            attempts[key, default: 0] += 1
            if attempts[key]! <= 2 {
                done(.failure(.unavailable("503 from the test")))
            } else {
                seen.note(op, key)
                done(.success(()))
            }
        }
        #expect(rig.drained(log))
        // The log drains before the flusher's thread has counted its last completions: wait for
        // them (bounded), rather than read the counters at once.
        var counters = rig.flusher.counters
        let deadline = ContinuousClock.now + .seconds(20)
        while !(counters.flushed == 200 && counters.inFlight == 0 && counters.waiting == 0), ContinuousClock.now < deadline {
            usleep(10_000)
            counters = rig.flusher.counters
        }
        #expect(Set(seen.calls.map(\.key)) == Set((0..<200).map { Durable.key($0) }))
        #expect(seen.calls.count == 200)
        #expect(counters.flushed == 200 && counters.failures == 400 && counters.retries == 400)
        #expect(counters.inFlight == 0 && counters.waiting == 0)
        try rig.shutdown()
        log.close()
        log = try KeyLog(path: path)
        defer { log.close() }
        #expect(log.recovery.pending == 0, "completions are in the log too")
    }

    @Test func stoppingGivesBackKeysWaitingToRetry() throws {
        let dir = try TempDir()
        let log = try KeyLog(path: dir.path + "/keys.log")
        defer { log.close() }
        let marker = LoopHarness(name: "marker")
        try #require(try Durable.markMany(log, on: marker, count: 20) { (.delete, Durable.key($0)) } == 0)
        var options = Self.options(maxInFlight: 8)
        options.retryBaseMillis = 10_000  // keys sit waiting
        options.retryMaxMillis = 10_000
        let rig = try FlusherRig(log: log, options: options) { _, _, done in done(.failure(.unavailable("down"))) }
        #expect(Durable.waitUntil { rig.flusher.counters.waiting == 8 })
        #expect(log.backlog.checkedOut == 8, "no more than maxInFlight taken while the tier is down")
        try rig.shutdown()
        #expect(log.backlog.checkedOut == 0 && log.backlog.deletes == 20, "nothing dropped")
        #expect(log.isPendingDelete(Durable.key(0)))
    }

    /// Writers on two loops update "hot" and mark keys while the flusher copies hot's current
    /// value down with a delay and a few failures. At the end the lower tier equals hot, no key
    /// was ever flushed twice at once, and the in-flight limit held.
    @Test func racingWritesNeverLeaveTheLowerTierOlderThanHot() throws {
        let dir = try TempDir()
        let log = try KeyLog(path: dir.path + "/keys.log")
        defer { log.close() }
        let world = World()
        let markers = (0..<2).map { LoopHarness(name: "marker-\($0)") }
        let limit = 4

        let flushHarness = LoopHarness(name: "flusher")
        let flushLoop = flushHarness.loop
        var delays = [Int: Reactor.Timer]()
        var nextDelay = 0
        var rng = SplitMix(seed: 7)
        let flush: Flusher.Flush = { op, key, done in
            let snapshot = world.beginFlush(key)
            let id = nextDelay
            nextDelay += 1
            delays[id] = Reactor.Timer(loop: flushLoop, millis: Int(rng.next() % 3)) {
                let timer = delays.removeValue(forKey: id)
                flushLoop.execute { withExtendedLifetime(timer) {} }
                let fail = rng.next() % 10 == 0
                world.endFlush(key, op == .delete ? nil : snapshot, apply: !fail)
                done(fail ? .failure(.unavailable("flaky")) : .success(()))
            }
        }
        let racing = try FlusherRig(log: log, options: Self.options(maxInFlight: limit), on: flushHarness, flush: flush)

        var threads = [pthread_t]()
        for (n, harness) in markers.enumerated() {
            var thread = pthread_t()
            #expect(startThread(&thread) {
                var rng = SplitMix(seed: UInt64(100 + n))
                _ = try? Durable.markMany(log, on: harness, count: 1500, inFlight: 4) { _ in
                    let key = Durable.key(Int(rng.next() % 20))
                    // Hot applies the command first; the mark follows, as in the proxy.
                    if rng.next() % 4 == 0 {
                        world.deleteOnHot(key)
                        return (.delete, key)
                    }
                    world.writeOnHot(key)
                    return (.dirty, key)
                }
            })
            threads.append(thread)
        }
        for t in threads { pthread_join(t, nil) }
        #expect(racing.drained(log))
        let superseded = racing.flusher.counters.superseded
        try racing.shutdown()

        let end = world.end()
        #expect(end.lower == end.hot)
        #expect(end.overlaps == 0)
        #expect(end.maxActive <= limit && end.maxActive > 1)
        #expect(superseded > 0, "the race was exercised: some flushes completed under a newer op")
        #expect(end.flushes > 20 && end.flushes < 3000, "flushes coalesced: \(end.flushes) for 3000 writes")
    }
}

struct Call: Equatable {
    var op: KeyLog.Op
    var key: TierKey
}

/// Flush calls seen, from the flusher's loop, read by the test thread.
final class Recorder {
    private var mutex = pthread_mutex_t()
    private var seen = [Call]()
    init() { pthread_mutex_init(&mutex, nil) }
    func note(_ op: KeyLog.Op, _ key: TierKey) {
        pthread_mutex_lock(&mutex)
        seen.append(Call(op: op, key: key))
        pthread_mutex_unlock(&mutex)
    }
    var calls: [Call] {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return seen
    }
}

/// A model of hot and a lower tier, shared by the writer loops and the flusher's loop.
final class World {
    private var mutex = pthread_mutex_t()
    private var hot = [TierKey: Int]()
    private var lower = [TierKey: Int]()
    private var version = 0
    private var active = Set<TierKey>()
    private var maxActive = 0
    private var overlaps = 0
    private var flushes = 0

    init() { pthread_mutex_init(&mutex, nil) }

    func writeOnHot(_ key: TierKey) { locked { version += 1; hot[key] = version } }
    func deleteOnHot(_ key: TierKey) { locked { hot[key] = nil } }

    /// A flush reads hot's current value as it starts.
    func beginFlush(_ key: TierKey) -> Int? {
        locked {
            if !active.insert(key).inserted { overlaps += 1 }
            maxActive = max(maxActive, active.count)
            flushes += 1
            return hot[key]
        }
    }

    /// ...and writes it (absent: deletes it) below when it lands.
    func endFlush(_ key: TierKey, _ value: Int?, apply: Bool) {
        locked {
            active.remove(key)
            if apply { lower[key] = value }
        }
    }

    func end() -> (hot: [TierKey: Int], lower: [TierKey: Int], overlaps: Int, maxActive: Int, flushes: Int) {
        locked { (hot, lower, overlaps, maxActive, flushes) }
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }
}
