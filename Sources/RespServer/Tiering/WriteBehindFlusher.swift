import Reactor
import Tiers

/// Drains the key log into the lower tiers from one loop (docs/semantics.md §3 and 10): each
/// pending key is flushed under its lock with the state its last write captured, or, after a
/// restart (the captured states were in memory) or after a write of a large collection
/// (`CollectionCapture`), with the state hot holds now. A key hot no longer holds then is
/// deleted below (an older copy there must not come back), unless hot lost it behind the
/// proxy's back after a deferred write saw it present.
final class WriteBehindFlusher {
    private let access: TierAccess
    private let hot: HotClient
    private let homeDB: Int
    private(set) var flusher: Flusher?

    /// `write-behind-delay`: how long a key stays pending before it is flushed.
    private let delayMillis: Int

    init(access: TierAccess, hot: HotClient, homeDB: Int, delayMillis: Int) {
        self.access = access
        self.hot = hot
        self.homeDB = homeDB
        self.delayMillis = delayMillis
    }

    func start() {
        guard let log = access.core.keyLog, access.hasLowerTiers else { return }
        var options = Flusher.Options()
        options.maxInFlight = 4096
        options.batchSize = 512
        options.delayMillis = delayMillis
        let f = Flusher(log: log, loop: access.loop, options: options) { [unowned self] items, done in
            flush(items) { [unowned self] results in
                noteFailures(results)
                done(results)
            }
        }
        // SWAPDB waits for the backlog to drain: no key waits out its delay then.
        f.rush = { [unowned self] in access.core.swapping }
        flusher = f
        access.core.flusher = f
        f.start()
    }

    func stop() { flusher?.stop() }

    /// Flushes that failed (they are retried) are said in the log, at most once every ten
    /// seconds with how many there were: `flush_failures` alone let a flush that could never
    /// succeed go unseen.
    private var failuresUnsaid = 0
    private var lastFailureLogMillis: Int64 = 0

    private func noteFailures(_ results: [Result<Void, TierError>]) {
        var first: TierError?
        for case .failure(let e) in results {
            failuresUnsaid += 1
            first = first ?? e
        }
        guard let e = first else { return }
        let now = access.loop.nowMillis
        guard now - lastFailureLogMillis >= 10_000 else { return }
        Log.warning("Write-behind flushes failed (\(failuresUnsaid) since the last report; they are retried): \(e)")
        failuresUnsaid = 0
        lastFailureLogMillis = now
    }

    /// A batch: the keys whose state was captured go below in one `storeMany`; the others
    /// (written in place, pending since before a restart, or held by a write) one by one.
    ///
    /// A write-behind key's captured state is stored without the key's lock, so a client's write
    /// of a key being flushed does not wait for the tier (nor take the slow way round a busy
    /// lock). That is safe because such a key is written below by this flusher alone, and it
    /// stays pending until its flush completes with the sequence it was taken at: a write
    /// meanwhile leaves a newer sequence and state, reads are answered from that state, and it is
    /// flushed again. A key of another policy may have a write-through writer storing it too, so
    /// its flush holds the lock as before.
    private func flush(_ items: [KeyLog.Item], _ done: @escaping ([Result<Void, TierError>]) -> Void) {
        let core = access.core
        var results = [Result<Void, TierError>](repeating: .success(()), count: items.count)
        var batch: [(Int, TierKey, KeyState)] = []
        var locked: [TierKey] = []
        var single: [Int] = []
        for (i, item) in items.enumerated() {
            let lockFree = core.rules.rule(for: item.key.bytes).policy == .writeBehind
            if lockFree || core.locks.tryAcquire(item.key) {
                if let state = core.pendingState(item.key) ?? (item.op == .delete ? .absent : nil) {
                    batch.append((i, item.key, state))
                    if !lockFree { locked.append(item.key) }
                    continue
                }
                if !lockFree { core.locks.release([item.key]) }
            }
            single.append(i)
        }
        var remaining = single.count + (batch.isEmpty ? 0 : 1)
        func finished() {
            remaining -= 1
            if remaining == 0 { done(results) }
        }
        if remaining == 0 { done(results); return }
        if !batch.isEmpty {
            access.storeMany(batch.map { ($0.1, $0.2) }) { outcome in
                // A stored state leaves the key log when the flusher completes its item, and only
                // if no newer write came (`KeyLog.complete` compares sequences).
                for ((i, _, _), r) in zip(batch, outcome) { results[i] = r }
                core.locks.release(distinct: locked)  // one key log batch: no repeats
                finished()
            }
        }
        for i in single {
            flush(items[i]) { r in
                results[i] = r
                finished()
            }
        }
    }

    private func flush(_ item: KeyLog.Item, _ done: @escaping (Result<Void, TierError>) -> Void) {
        let core = access.core
        let op = item.op, key = item.key
        core.locks.acquire([key], on: access.loop) { [self] in
            func write(_ state: KeyState) {
                access.store(key, state) { result in
                    core.locks.release([key])
                    done(result)
                }
            }
            if let state = core.pendingState(key) { write(state); return }
            if op == .delete { write(.absent); return }
            // Any type may be pending: DUMP reads it (`KeyCapture`).
            var batch = DBBatch(home: homeDB)
            for read in KeyCapture.dump.commands(key.bytes) { batch.add(read, db: key.db) }
            hot.send(batch.finish()) { replies in
                let r = batch.ours(replies)
                if KeyCapture.unanswered(r[0]) {
                    core.locks.release([key])
                    done(.failure(.unavailable("hot: \(String(decoding: r[0].prefix(200), as: UTF8.self))")))
                    return
                }
                let now = wallClockMillis()
                let state = KeyCapture.dumped(r[0], r[1], now: now)
                if case .value(let payload, _, _) = state { core.collections.noteSize(key, bytes: payload.count) }
                if state == .absent && core.collections.lostBeforeFlush(key, now: now) {
                    Log.warning("Hot lost a written collection before its write-behind flush; the lower tiers keep its last flushed state")
                    core.locks.release([key])
                    done(.success(()))
                    return
                }
                write(state)
            }
        }
    }
}
