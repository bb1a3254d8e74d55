import Reactor

/// Drains a `KeyLog` into the lower tiers from one loop: every `intervalMillis` (and whenever a
/// flush finishes) it takes pending keys and hands each to the proxy's `flush` closure, which
/// reads the key's current state from hot and writes or deletes it below.
///
/// A success completes the key (a newer op since it was taken keeps it pending). A failure is
/// retried after exponential backoff with jitter, capped at `retryMaxMillis`, for as long as
/// it takes: nothing is dropped. A retry flushes the key's latest op, not the one first taken.
/// At most `maxInFlight` keys are checked out at once, counting those waiting to retry (so a
/// down tier does not pull the whole backlog into memory), and one key is never flushed twice
/// at once. Everything but `counters` runs on `loop`.
public final class Flusher {
    /// Flushes `op` of `key`; calls `done` once, on the flusher's loop.
    public typealias Flush = (_ op: KeyLog.Op, _ key: TierKey, _ done: @escaping (Result<Void, TierError>) -> Void) -> Void
    /// Flushes a batch of pending keys; calls `done` once, on the flusher's loop, with one result
    /// per item in their order. A batch costs the tiers one round trip, not one per key.
    public typealias FlushBatch = (_ items: [KeyLog.Item], _ done: @escaping ([Result<Void, TierError>]) -> Void) -> Void

    public struct Options: Sendable {
        public var maxInFlight = 64
        /// Most keys handed to one `FlushBatch` call.
        public var batchSize = 1
        /// How long a new key may wait for its batch.
        public var intervalMillis = 100
        /// How long a key stays pending before it is flushed (counted from when it became
        /// pending, not from its latest write): every write of it meanwhile costs the tiers
        /// nothing more, and under a burst the flush work waits until the burst is written.
        /// `rush` (or `flushNow`) lifts it while true.
        public var delayMillis = 0
        public var retryBaseMillis = 100
        public var retryMaxMillis = 30_000
        public init() {}
    }

    /// For INFO and `/metrics`; readable from any thread.
    public struct Counters: Equatable, Sendable {
        public var flushed: Int
        public var retries: Int
        public var failures: Int
        /// Flushes that succeeded while a newer op arrived: the key stayed pending for another.
        public var superseded: Int
        /// Keys being flushed now, and keys waiting for their next attempt.
        public var inFlight: Int
        public var waiting: Int
    }

    public let log: KeyLog
    public let loop: EventLoop
    public let options: Options
    private let flush: FlushBatch
    private let backoff: RetryPolicy
    private var tick: Reactor.Timer?
    private var refill: DeferredTask?
    private var running = false
    private var waiting: [TierKey: Reactor.Timer] = [:]
    /// True while the delay is lifted (a SWAPDB waiting for the backlog to drain).
    public var rush: (() -> Bool)?
    private var rushOnce = false
    private let flushed = Reactor.AtomicCounter()
    private let retries = Reactor.AtomicCounter()
    private let failures = Reactor.AtomicCounter()
    private let superseded = Reactor.AtomicCounter()
    private let checkedOut = Reactor.AtomicCounter()
    private let waitingCount = Reactor.AtomicCounter()

    public convenience init(log: KeyLog, loop: EventLoop, options: Options = Options(), flush: @escaping Flush) {
        self.init(log: log, loop: loop, options: options, flushBatch: { items, done in
            fanOut(items.count, { i, cb in flush(items[i].op, items[i].key, cb) }, done)
        })
    }

    public init(log: KeyLog, loop: EventLoop, options: Options = Options(), flushBatch: @escaping FlushBatch) {
        self.log = log
        self.loop = loop
        self.options = options
        self.flush = flushBatch
        var backoff = RetryPolicy()
        backoff.baseDelayMillis = max(1, options.retryBaseMillis)
        backoff.maxDelayMillis = max(backoff.baseDelayMillis, options.retryMaxMillis)
        self.backoff = backoff
    }

    /// Starts flushing. Call on `loop`.
    public func start() {
        guard !running else { return }
        running = true
        refill = DeferredTask(loop: loop) { [weak self] in self?.fill() }
        tick = Reactor.Timer(loop: loop, millis: max(1, options.intervalMillis), repeating: true) { [weak self] in
            self?.log.kick()
            self?.log.syncIfDue()
            self?.fill()
        }
        fill()
    }

    /// Flushes what is pending now rather than at the next tick (`TIERS FLUSH`). Call on `loop`.
    public func flushNow() {
        rushOnce = true
        refill?.schedule()
    }

    /// Stops taking keys and gives back those waiting to retry. Flushes already running still
    /// complete their keys when they succeed. Call on `loop`.
    public func stop() {
        running = false
        tick?.cancel()
        tick = nil
        for (key, timer) in waiting {
            timer.cancel()
            log.release(key)
            checkedOut.add(-1)
        }
        waitingCount.add(-waiting.count)
        waiting = [:]
    }

    public var counters: Counters {
        let out = checkedOut.value
        let wait = waitingCount.value
        return Counters(flushed: flushed.value, retries: retries.value, failures: failures.value,
                        superseded: superseded.value,
                        inFlight: out - wait, waiting: wait)
    }

    private func fill() {
        guard running else { return }
        let room = options.maxInFlight - checkedOut.value
        guard room > 0 else { return }
        let size = max(1, options.batchSize)
        let delayed = options.delayMillis > 0 && !rushOnce && rush?() != true
        rushOnce = false
        let items = log.takeBatch(max: room, dueBy: delayed ? wallClockMillis() - Int64(options.delayMillis) : .max)
        checkedOut.add(items.count)
        for start in stride(from: 0, to: items.count, by: size) {
            attempt(Array(items[start..<min(items.count, start + size)]), number: 1)
        }
    }

    private func attempt(_ items: [KeyLog.Item], number: Int) {
        var finished = false
        flush(items) { [self] results in
            precondition(!finished, "flush completed twice for one attempt")
            precondition(results.count == items.count, "a flush must answer every item of its batch")
            finished = true
            var done: [KeyLog.Item] = []
            for (item, result) in zip(items, results) {
                switch result {
                case .success: done.append(item)
                case .failure: failed(item, attempt: number)
                }
            }
            if !done.isEmpty { succeeded(done) }
        }
    }

    private func succeeded(_ items: [KeyLog.Item]) {
        let cleared = log.complete(items)
        superseded.add(items.count - cleared)
        flushed.add(items.count)
        checkedOut.add(-items.count)
        // The next batch goes at once only when a full one waits; a smaller backlog waits for
        // the tick (at most `intervalMillis`). Refilling after every batch under a steady write
        // load flushed a few keys at a time, so each key paid a batch's costs (a worker wake, a
        // transaction, a WAL page per key, a timer): bigger batches make them per batch again.
        // Deferred: a closure that completes synchronously must not recurse into the next flush.
        // With a delay, a batch that was not full says that the keys due are flushed.
        let size = max(1, options.batchSize)
        if log.availableCount >= size && (options.delayMillis == 0 || items.count >= size) { refill?.schedule() }
    }

    private func failed(_ item: KeyLog.Item, attempt: Int) {
        failures.add(1)
        guard running else {
            log.release(item.key)
            checkedOut.add(-1)
            return
        }
        let delay = backoff.delayMillis(retry: min(attempt, 30), serverHintMillis: nil)
        waitingCount.add(1)
        waiting[item.key] = Reactor.Timer(loop: loop, millis: delay) { [weak self] in self?.retry(item.key, attempt: attempt + 1) }
    }

    private func retry(_ key: TierKey, attempt: Int) {
        guard let timer = waiting.removeValue(forKey: key) else { return }
        // We are inside this timer's callback: let it go on a later loop turn.
        loop.execute { withExtendedLifetime(timer) {} }
        waitingCount.add(-1)
        // The key is still checked out to us, so its latest op is the one to flush.
        guard let current = log.pendingItem(key) else {
            checkedOut.add(-1)
            return
        }
        retries.add(1)
        self.attempt([current], number: attempt)
    }
}
