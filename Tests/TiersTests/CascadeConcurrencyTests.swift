import Glibc
import Reactor
import Testing
@testable import Tiers

/// Generations, single-flight lookups and the negative cache, across real threads and loops.
@Suite struct CascadeGenerationTests {
    @Test func bumpsFromFourThreadsAreAllCountedAndSeen() throws {
        let generations = KeyGenerations()
        let shared = TierKey(db: 0, "shared")
        let before = generations.snapshot(shared)
        let perThread = 20_000
        // Each thread bumps the shared key, and checks after every bump of its own key that a
        // snapshot taken before it is no longer unchanged.
        let failures = Reactor.AtomicCounter()
        let threads = (0..<4).map { t in
            TestThread {
                let own = TierKey(db: t, "own")
                for _ in 0..<perThread {
                    let s = generations.snapshot(own)
                    if !generations.unchanged(since: s) { failures.add(1) }
                    generations.bump(own)
                    generations.bump(shared)
                    if generations.unchanged(since: s) { failures.add(1) }
                }
            }
        }
        for t in threads { try t.join(seconds: 60) }
        #expect(failures.value == 0)
        #expect(!generations.unchanged(since: before))
        // No bump lost: the shared slot advanced by exactly 4 × perThread generations.
        let after = generations.snapshot(shared)
        #expect((after.word - before.word) >> 20 == UInt64(4 * perThread))
        #expect(generations.unchanged(since: after))
    }

    @Test func aBumpOnOneLoopIsSeenOnAnotherAtOnce() throws {
        let generations = KeyGenerations()
        let a = LoopHarness(name: "gen-a"), b = LoopHarness(name: "gen-b")
        let key = TierKey(db: 2, "k")
        for _ in 0..<200 {
            let snap: KeyGeneration = try a.wait("snapshot on a") { done in done(generations.snapshot(key)) }
            let _: Bool = try b.wait("bump on b") { done in generations.bump(key); done(true) }
            let seen: Bool = try a.wait("check on a") { done in done(generations.unchanged(since: snap)) }
            #expect(seen == false)
        }
    }

    @Test func aLookupOverlappingAWriteNeverCounts() {
        let generations = KeyGenerations()
        let key = TierKey(db: 0, "k")
        // Snapshot while the write is in progress: unusable even after the write ends.
        let write = generations.beginWrite(key)
        let during = generations.snapshot(key)
        #expect(during.writeInProgress)
        #expect(!generations.unchanged(since: during))
        generations.endWrite(write)
        #expect(!generations.unchanged(since: during))
        // Snapshot before the write began: the write's start alone invalidates it.
        let before = generations.snapshot(key)
        #expect(generations.unchanged(since: before))
        let second = generations.beginWrite(key)
        #expect(!generations.unchanged(since: before))
        generations.endWrite(second)
        let quiet = generations.snapshot(key)
        #expect(!quiet.writeInProgress && generations.unchanged(since: quiet))
        // Two writes of one key at once: in progress until both have ended.
        let w1 = generations.beginWrite(key), w2 = generations.beginWrite(key)
        generations.endWrite(w1)
        #expect(generations.snapshot(key).writeInProgress)
        generations.endWrite(w2)
        #expect(!generations.snapshot(key).writeInProgress)
    }

    @Test func keysSharingASlotOnlyLoseAPromotion() {
        let generations = KeyGenerations(slots: 4)
        let a = TierKey(db: 0, "a")
        let b = (0..<1000).lazy.map { TierKey(db: 0, "b\($0)") }.first { generations.slot($0) == generations.slot(a) }!
        let snap = generations.snapshot(a)
        generations.bump(b)
        #expect(!generations.unchanged(since: snap), "a write to a key in the same slot counts as a change")
        #expect(generations.slot(TierKey(db: 1, "a")) != generations.slot(a)
                || generations.slot(TierKey(db: 2, "a")) != generations.slot(a), "db is part of the hash")
    }
}

@Suite struct CascadeLookupFlightTests {
    /// 1000 concurrent misses of one key from two loops: one lookup, 1000 completions, each on
    /// the asker's own loop thread, each exactly once.
    @Test func thousandAskersOnTwoLoopsShareOneLookup() throws {
        try storm(result: .success(42))
    }

    @Test func aFailedLookupFailsEveryAsker() throws {
        try storm(result: .failure(.unavailable("warm timed out")))
    }

    private func storm(result: Result<Int, TierError>) throws {
        let loops = [LoopHarness(name: "flight-a"), LoopHarness(name: "flight-b")]
        let threadIDs = try loops.map { h -> pthread_t in try h.wait("thread id") { $0(pthread_self()) } }
        let flights = LookupFlights<Int>()
        let generations = KeyGenerations()
        let key = TierKey(db: 0, "warm-only")
        let started = Reactor.AtomicCounter(), asked = Reactor.AtomicCounter()
        let finishBox = Locked<((Result<Int, TierError>) -> Void)?>(nil)
        let completions = Locked([(asker: Int, onOwnThread: Bool, result: Result<Int, TierError>)]())
        let askers = 1000
        for i in 0..<askers {
            let h = loops[i % 2], own = threadIDs[i % 2]
            h.loop.execute {
                flights.lookup(key, generation: generations.snapshot(key), on: h.loop, start: { finish in
                    started.add(1)
                    finishBox.set(finish)
                }, done: { r in
                    completions.update { $0.append((i, pthread_equal(pthread_self(), own) != 0, r)) }
                })
                asked.add(1)
            }
        }
        try waitUntil("all askers registered", seconds: 30) { asked.value == askers }
        #expect(started.value == 1)
        #expect(flights.waiters(for: key) == askers)
        let finish = try #require(finishBox.get())
        finish(result)   // from the test's thread: completions must still land on each asker's loop
        try waitUntil("all askers answered", seconds: 30) { completions.get().count == askers }
        finish(.success(-1))   // a second finish answers nobody
        for h in loops { let _: Bool = try h.wait("drain") { $0(true) } }

        let answered = completions.get()
        #expect(answered.count == askers)
        #expect(Set(answered.map(\.asker)).count == askers, "each asker answered exactly once")
        #expect(answered.allSatisfy { $0.onOwnThread })
        #expect(answered.allSatisfy { $0.result == result })
        #expect(started.value == 1)
        #expect(flights.inFlight == 0)
    }

    @Test func anAskerAfterAWriteStartsItsOwnLookup() {
        let flights = LookupFlights<Int>()
        let generations = KeyGenerations()
        let loop = EventLoop()
        let key = TierKey(db: 0, "k")
        var finishes = [(Result<Int, TierError>) -> Void]()
        var answers = [String: Int]()
        let before = generations.snapshot(key)
        #expect(flights.lookup(key, generation: before, on: loop, start: { finishes.append($0) }) { answers["old"] = try? $0.get() })
        generations.bump(key)
        let after = generations.snapshot(key)
        #expect(flights.lookup(key, generation: after, on: loop, start: { finishes.append($0) }) { answers["new"] = try? $0.get() })
        #expect(!flights.lookup(key, generation: after, on: loop, start: { finishes.append($0) }) { answers["new2"] = try? $0.get() })
        #expect(finishes.count == 2)
        finishes[0](.success(1))   // the older lookup answers only its own asker
        #expect(flights.waiters(for: key) == 2)
        finishes[1](.success(2))
        #expect(flights.inFlight == 0)
        runLoop(loop, timeoutMillis: 5_000) { stop in loop.execute { loop.execute(stop) } }
        #expect(answers == ["old": 1, "new": 2, "new2": 2])
    }

    @Test func beyondMaxKeysLookupsRunUnshared() {
        let flights = LookupFlights<Int>(maxKeys: 2)
        let generations = KeyGenerations()
        let loop = EventLoop()
        var starts = 0
        for name in ["a", "b", "c", "c"] {
            let key = TierKey(db: 0, name)
            flights.lookup(key, generation: generations.snapshot(key), on: loop, start: { _ in starts += 1 }) { _ in }
        }
        #expect(starts == 4, "c is over the bound both times, so it is not shared")
        #expect(flights.inFlight == 2)
    }
}

@Suite struct CascadeNegativeCacheTests {
    @Test func expiresAfterItsTTL() {
        let generations = KeyGenerations()
        let cache = NegativeCache(generations: generations, ttlMillis: 100)
        let key = TierKey(db: 0, "nobody")
        cache.rememberAbsent(key, since: generations.snapshot(key), now: 1_000)
        #expect(cache.isKnownAbsent(key, now: 1_000))
        #expect(cache.isKnownAbsent(key, now: 1_099))
        #expect(!cache.isKnownAbsent(key, now: 1_100))
        #expect(cache.count == 0)
        #expect(!cache.isKnownAbsent(TierKey(db: 1, "nobody"), now: 1_000), "databases are separate")
    }

    @Test func aWriteFromAnotherLoopInvalidatesAtOnce() throws {
        let generations = KeyGenerations()
        let cache = NegativeCache(generations: generations, ttlMillis: 60_000)
        let writer = LoopHarness(name: "neg-writer")
        let key = TierKey(db: 0, "k")
        cache.rememberAbsent(key, since: generations.snapshot(key), now: 0)
        #expect(cache.isKnownAbsent(key, now: 1))
        let _: Bool = try writer.wait("write") { done in generations.bump(key); done(true) }
        #expect(!cache.isKnownAbsent(key, now: 2))
        // A write in progress also keeps the key from being known absent.
        cache.rememberAbsent(key, since: generations.snapshot(key), now: 3)
        #expect(cache.isKnownAbsent(key, now: 4))
        let w = generations.beginWrite(key)
        #expect(!cache.isKnownAbsent(key, now: 5))
        generations.endWrite(w)
    }

    @Test func anAnswerFromALookupThatAWriteOverlappedIsNotRemembered() {
        let generations = KeyGenerations()
        let cache = NegativeCache(generations: generations)
        let key = TierKey(db: 0, "k")
        let snap = generations.snapshot(key)
        generations.bump(key)   // written while the lookup ran
        cache.rememberAbsent(key, since: snap, now: 0)
        #expect(!cache.isKnownAbsent(key, now: 1))
        let w = generations.beginWrite(key)
        let during = generations.snapshot(key)
        generations.endWrite(w)
        cache.rememberAbsent(key, since: during, now: 0)
        #expect(cache.count == 0)
    }

    @Test func boundedByDroppingTheOldest() {
        let generations = KeyGenerations()
        let cache = NegativeCache(generations: generations, capacity: 3, ttlMillis: 1_000)
        let keys = (0..<5).map { TierKey(db: 0, "k\($0)") }
        for (i, k) in keys.prefix(3).enumerated() { cache.rememberAbsent(k, since: generations.snapshot(k), now: Int64(i)) }
        cache.rememberAbsent(keys[0], since: generations.snapshot(keys[0]), now: 10)   // refreshed: now the newest
        cache.rememberAbsent(keys[3], since: generations.snapshot(keys[3]), now: 11)
        #expect(cache.count == 3)
        #expect(!cache.isKnownAbsent(keys[1], now: 12), "oldest dropped")
        #expect(cache.isKnownAbsent(keys[0], now: 12) && cache.isKnownAbsent(keys[2], now: 12)
                && cache.isKnownAbsent(keys[3], now: 12))
        // Expired entries go before live ones when room is needed.
        cache.rememberAbsent(keys[4], since: generations.snapshot(keys[4]), now: 1_005)
        // k2 (expired at 1002) made room; k0 (until 1010) and k3 (until 1011) stayed.
        #expect(cache.count == 3)
        #expect(cache.isKnownAbsent(keys[0], now: 1_006) && cache.isKnownAbsent(keys[3], now: 1_006)
                && cache.isKnownAbsent(keys[4], now: 1_006))
        // Many re-inserts of one key stay bounded.
        for n in 0..<10_000 { cache.rememberAbsent(keys[4], since: generations.snapshot(keys[4]), now: 1_006 + Int64(n % 3)) }
        #expect(cache.count <= 3)
    }
}

// MARK: - Helpers

/// A value guarded by a mutex, for results gathered from several threads.
final class Locked<T>: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var value: T
    init(_ value: T) { self.value = value; pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }
    func get() -> T { pthread_mutex_lock(&mutex); defer { pthread_mutex_unlock(&mutex) }; return value }
    func set(_ v: T) { update { $0 = v } }
    func update(_ change: (inout T) -> Void) {
        pthread_mutex_lock(&mutex); defer { pthread_mutex_unlock(&mutex) }
        change(&value)
    }
}

/// Polls `condition` every millisecond until it holds, or throws after `seconds`.
func waitUntil(_ what: String, seconds: Double, _ condition: () -> Bool) throws {
    let clock = ContinuousClock()
    let deadline = clock.now + .milliseconds(Int(seconds * 1000))
    while !condition() {
        if clock.now >= deadline { throw HarnessTimeout(what: what, seconds: seconds) }
        usleep(1_000)
    }
}

/// A plain pthread running `body`, joined with a deadline.
final class TestThread {
    private let done = Completion<Bool>()
    private var thread = pthread_t()

    init(_ body: @escaping () -> Void) {
        let done = self.done
        _ = startThread(&thread) { body(); done.fulfil(true, onLoop: true) }
    }

    func join(seconds: Double) throws {
        guard done.wait(seconds: seconds) != nil else { throw HarnessTimeout(what: "thread", seconds: seconds) }
        pthread_join(thread, nil)
    }
}
