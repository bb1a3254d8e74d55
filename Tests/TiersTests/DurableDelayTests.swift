import Glibc
import Reactor
import Testing
@testable import Tiers

/// The key log's captured states and the flusher's delay: a key whose state the writer knew
/// waits out `delayMillis` and is flushed once however often it was written; a key whose state
/// only hot knows does not wait.
@Suite struct DurableDelayTests {
    static func captured(_ text: String) -> KeyLog.Captured { .value(Entry(value: Array(text.utf8))) }

    /// One mark made on `harness`'s loop (as the proxy's loops make them); true if taken.
    static func mark(_ log: KeyLog, _ key: TierKey, _ op: KeyLog.Op, _ captured: KeyLog.Captured,
                     on harness: LoopHarness) throws -> Bool {
        try harness.wait("mark") { (done: @escaping (Bool) -> Void) in
            done(log.markNow(key, op, captured: captured, on: harness.loop) == nil)
        }
    }

    /// Marks under `.everysec` complete at once (`markNow`).
    static func everysecLog(_ dir: TempDir) throws -> KeyLog {
        var options = KeyLog.Options()
        options.sync = .everysec
        return try KeyLog(path: dir.path + "/keys.log", options: options)
    }

    @Test func theLatestMarkCarriesTheStateAndCompletionClearsIt() throws {
        let dir = try TempDir()
        let log = try Self.everysecLog(dir)
        defer { log.close() }
        let harness = LoopHarness(name: "marker")
        let k = Durable.key(1)
        #expect(try Self.mark(log, k, .dirty, Self.captured("v1"), on: harness))
        #expect(try Self.mark(log, k, .dirty, Self.captured("v2"), on: harness))
        #expect(log.pendingState(k)?.captured == Self.captured("v2"))
        #expect(try Self.mark(log, k, .delete, .absent, on: harness))
        #expect(log.pendingState(k)?.op == .delete)
        #expect(log.pendingState(k)?.captured == .absent)
        log.forgetCaptured(db: 0)
        #expect(log.pendingState(k)?.captured == .unknown)

        let item = try #require(log.takeBatch(max: 10).first)
        #expect(log.complete(k, sequence: item.sequence))
        #expect(log.pendingState(k) == nil)
    }

    @Test func aCapturedKeyIsNotDueBeforeItsTimeButAnUnknownOneIs() throws {
        let dir = try TempDir()
        let log = try Self.everysecLog(dir)
        defer { log.close() }
        let harness = LoopHarness(name: "marker")
        let known = Durable.key(1), unknown = Durable.key(2)
        #expect(try Self.mark(log, known, .dirty, Self.captured("v"), on: harness))
        #expect(try Self.mark(log, unknown, .dirty, .unknown, on: harness))
        let longAgo = wallClockMillis() - 60_000
        #expect(log.takeBatch(max: 10, dueBy: longAgo).map(\.key) == [unknown])
        #expect(log.takeBatch(max: 10, dueBy: longAgo).isEmpty)
        #expect(log.takeBatch(max: 10).map(\.key) == [known])
    }

    @Test func aKeyWrittenWhileInFlightIsHandedOutAgainAndAReleasedOneToo() throws {
        let dir = try TempDir()
        let log = try Self.everysecLog(dir)
        defer { log.close() }
        let harness = LoopHarness(name: "marker")
        let keys = (1...4).map { Durable.key($0) }
        for k in keys { #expect(try Self.mark(log, k, .dirty, Self.captured("a"), on: harness)) }
        let first = log.takeBatch(max: 2)
        #expect(first.map(\.key) == Array(keys[0..<2]))
        #expect(try Self.mark(log, keys[0], .dirty, Self.captured("b"), on: harness))  // while in flight
        #expect(log.takeBatch(max: 1).map(\.key) == [keys[2]])
        #expect(!log.complete(keys[0], sequence: first[0].sequence))  // a newer write: still pending
        #expect(log.complete(keys[1], sequence: first[1].sequence))
        log.release(keys[2])
        #expect(Set(log.takeBatch(max: 10).map(\.key)) == [keys[0], keys[2], keys[3]])
        #expect(log.pendingState(keys[0])?.captured == Self.captured("b"))
        #expect(log.takeBatch(max: 10).isEmpty)
    }

    @Test func aKeyWrittenManyTimesWithinTheDelayIsFlushedOnceAfterIt() throws {
        let dir = try TempDir()
        let log = try Self.everysecLog(dir)
        defer { log.close() }
        let marker = LoopHarness(name: "marker")
        let k = Durable.key(3)
        let firstMark = wallClockMillis()
        for i in 0..<200 {
            #expect(try Self.mark(log, k, .dirty, Self.captured("v\(i)"), on: marker))
        }
        var options = DurableFlusherTests.options()
        options.delayMillis = 300
        let seen = Recorder()
        let flushedAt = Stamp()
        let rig = try FlusherRig(log: log, options: options) { op, key, done in
            flushedAt.set(wallClockMillis())
            seen.note(op, key)
            done(.success(()))
        }
        #expect(rig.drained(log))
        #expect(seen.calls == [Call(op: .dirty, key: k)])
        // Not a timing bound on the machine: the flusher may not take the key before then.
        #expect(flushedAt.value - firstMark >= 300)
        try rig.shutdown()
    }
}

/// One time in ms written by the flusher's loop and read by the test thread.
final class Stamp {
    private var mutex = pthread_mutex_t()
    private var stored: Int64 = 0
    init() { pthread_mutex_init(&mutex, nil) }
    func set(_ v: Int64) {
        pthread_mutex_lock(&mutex)
        stored = v
        pthread_mutex_unlock(&mutex)
    }
    var value: Int64 {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return stored
    }
}
