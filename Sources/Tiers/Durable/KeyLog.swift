import Glibc
import Reactor

/// The durable set of keys the lower tiers still owe: written keys to flush (write-behind) and
/// deletes to retry until they land (reliable deletes). An append-only log on local disk —
/// put it on a persistent volume — plus an in-memory index of the pending keys.
///
/// Marks come from any loop. Each one updates the index at once (so `isPendingDelete` and
/// `takeBatch` see it immediately) and queues its record for one writer thread, which writes
/// everything queued meanwhile and covers it with one `fdatasync` (group commit); the mark's
/// completion then runs on the caller's loop. A completion with `.success` means the record
/// is on disk. Once a write or sync fails the log refuses further marks: after a failed
/// `fdatasync` Linux may drop the dirty pages, so nothing after it could be trusted.
///
/// How often the file is synced is the `Sync` policy, named after Redis's `appendfsync`: under
/// `.always` a mark completes once its record is covered by an `fdatasync`; under `.everysec`
/// and `.no` it completes at once, the writer appends what was queued as soon as it can, and
/// syncs at most once a second (`.everysec`, also when idle: `syncIfDue`) or never (`.no`,
/// the kernel's choice). A crash then loses at most the records not yet synced, as Redis's
/// AOF does.
///
/// The record format is in `KeyLogRecord`. When dead records (superseded or done) dominate, the
/// writer replaces the file with one record per pending key instead of appending its batch.
public final class KeyLog {
    /// What the lower tiers owe for a key.
    public enum Op: UInt8, Sendable {
        /// Written on hot: copy its current state down.
        case dirty = 1
        /// Deleted: delete it below; until then it reads as absent.
        case delete = 2
    }

    /// What the lower tiers are to hold for a pending key, as its latest write left it.
    public enum Captured: Equatable, Sendable {
        /// Not known here (after a restart, or a write whose result only hot knows): the
        /// flusher reads hot.
        case unknown
        /// Deleted, or expired.
        case absent
        case value(Entry)
    }

    /// A pending key handed to the flusher: flush `op`, then `complete(key, sequence:)`.
    public struct Item: Hashable, Sendable {
        public let op: Op
        public let key: TierKey
        public let sequence: UInt64
        /// When the key became pending (Unix ms).
        public let sinceMillis: Int64
    }

    /// When records are made durable (Redis's `appendfsync` words).
    public enum Sync: String, Sendable, CaseIterable {
        case always, everysec, no
    }

    /// Limits, sync policy and compaction thresholds.
    public struct Options: Sendable {
        public var sync = Sync.always
        /// Marks of keys not yet pending fail `.unavailable` beyond these (keys already pending
        /// can always be re-marked): the index's memory is bounded, and the caller falls back.
        public var maxPendingKeys = 1_000_000
        public var maxPendingKeyBytes = 256 << 20
        /// Compact once the file holds at least this many records, most of them dead.
        public var compactMinRecords = 65_536
        public var compactDeadFraction = 0.5
        public init() {}
    }

    /// The backlog for INFO: keys to flush, deletes to retry, keys being flushed, oldest age.
    public struct Backlog: Equatable, Sendable {
        public var dirty: Int
        public var deletes: Int
        public var checkedOut: Int
        /// Age of the oldest pending key in ms (0 when nothing is pending).
        public var oldestAgeMillis: Int64
    }

    /// Counters of the log itself: group commit is `appends / syncs`.
    public struct Stats: Equatable, Sendable {
        public var appends = 0
        /// Records appended (or covered by a rewrite) in the file: `appends - written` are still
        /// in memory, lost if the process dies now.
        public var written = 0
        public var syncs = 0
        public var compactions = 0
        public var fileRecords = 0
        public var fileBytes = 0
    }

    /// What opening the log found.
    public struct Recovery: Equatable, Sendable {
        public var records: Int
        public var pending: Int
        /// Bytes of a torn tail that replay ignored and cut off.
        public var tornBytes: Int
    }

    public let path: String
    public let options: Options
    public let recovery: Recovery

    var lock = pthread_mutex_t()
    var pending = PendingSet()
    private var nextSequence: UInt64
    /// Set by a failed write or sync: nothing after it can be trusted, so marks are refused.
    var broken: TierError?
    private var closed = false
    var counters = Stats()
    /// Under `.everysec`: records appended since the last sync, and when that was (Unix ms).
    var unsynced = false
    /// Under `.everysec` and `.no`: records marked but not yet taken by the writer.
    var queued = [UInt8]()
    var queuedRecords = 0
    var wakeSubmitted = false
    /// One end-of-pass hand-off task per loop that marks (see `enqueue`).
    private var kickers: [ObjectIdentifier: DeferredTask] = [:]
    var lastSyncMillis: Int64 = 0
    let file: KeyLogFile
    var writer: WorkerThread<Job>!

    struct Job {
        var encoded: [UInt8]
        var records: Int
        var compact = false
        /// An `.everysec` tick: sync whatever was appended unsynced.
        var sync = false
        var loop: EventLoop?
        var done: ((Result<Void, TierError>) -> Void)?
    }

    /// Opens (creating if needed) the log at `path`, replays it into the pending set and starts
    /// the writer. Throws if the file cannot be opened or locked, or is not a key log.
    public init(path: String, options: Options = Options()) throws(TierError) {
        let (file, scan) = try KeyLogFile.open(path)
        self.path = path
        self.options = options
        self.file = file
        var maxSequence: UInt64 = 0
        for record in scan.records {
            pending.apply(record)
            maxSequence = max(maxSequence, record.sequence)
        }
        nextSequence = maxSequence + 1
        recovery = Recovery(records: scan.records.count, pending: pending.count, tornBytes: scan.tornBytes)
        counters.fileRecords = file.records
        counters.fileBytes = file.bytes
        pthread_mutex_init(&lock, nil)
        // unowned(unsafe): deinit stops the writer before the object goes, and a plain unowned
        // reference would trap when the last batch runs during deinit.
        writer = WorkerThread(name: "tp-keylog") { [unowned(unsafe) self] jobs in writeBatch(jobs) }
    }

    deinit {
        close()
        pthread_mutex_destroy(&lock)
    }

    /// Writes what is queued, then stops the writer and closes the file; later marks fail.
    public func close() {
        // The kick tasks go while their loops' bases are still there; what they would have
        // handed over goes with this last job (synced under `.everysec`).
        let last: Bool = withLock {
            closed = true
            kickers.removeAll()
            return options.sync != .always
        }
        if last { writer?.submit(Job(encoded: [], records: 0, sync: options.sync == .everysec)) }
        writer?.stop()
        file.close()
    }

    // MARK: - Marks

    /// Records that `key` was written on hot; `done` runs on `loop` once that is durable (under
    /// `.everysec` and `.no`: before this call returns, unless the mark failed).
    /// `captured`: the state the write left, if the writer knows it (the flusher writes it
    /// below without asking hot).
    public func markDirty(_ key: TierKey, captured: Captured = .unknown, on loop: EventLoop,
                          _ done: @escaping (Result<Void, TierError>) -> Void) {
        mark(key, .dirty, captured: captured, on: loop, done)
    }

    /// Records that `key` was deleted and must be deleted below; `done` runs on `loop` once
    /// that is durable. From this call on, `isPendingDelete(key)` is true until it completes.
    public func markDeleted(_ key: TierKey, on loop: EventLoop, _ done: @escaping (Result<Void, TierError>) -> Void) {
        mark(key, .delete, captured: .absent, on: loop, done)
    }

    /// Under `.everysec` and `.no`, where a mark does not wait for the disk: records that `key`
    /// was written (`op` dirty) or deleted, and returns nil, or why the mark was refused. No
    /// completion to call: a write-behind reply pays one lock and one append here.
    public func markNow(_ key: TierKey, _ op: Op, captured: Captured, on loop: EventLoop) -> TierError? {
        precondition(options.sync != .always, "under appendfsync always a mark waits for its fdatasync")
        let now = wallClockMillis()
        pthread_mutex_lock(&lock)
        let admitted = admitLocked(key, op, captured: captured, now: now)
        let kick = (try? admitted.get()).flatMap { enqueue($0, kickOn: loop) }
        pthread_mutex_unlock(&lock)
        kick?.schedule()
        if case .failure(let e) = admitted { return e }
        return nil
    }

    /// True if marks complete before the disk has them (`.everysec`, `.no`): `markNow` applies.
    public var marksAtOnce: Bool { options.sync != .always }

    private func mark(_ key: TierKey, _ op: Op, captured: Captured, on loop: EventLoop,
                      _ done: @escaping (Result<Void, TierError>) -> Void) {
        if options.sync != .always {
            if let failure = markNow(key, op, captured: captured, on: loop) {
                loop.execute { done(.failure(failure)) }
            } else {
                done(.success(()))
            }
            return
        }
        let now = wallClockMillis()
        pthread_mutex_lock(&lock)
        var failure: TierError?
        switch admitLocked(key, op, captured: captured, now: now) {
        case .success(let record):
            // Submitting under the lock keeps file order equal to sequence order.
            if writer.submit(Job(encoded: record.encoded, records: 1, loop: loop, done: done)) {
                counters.appends += 1
            } else {
                failure = closedError
            }
        case .failure(let e):
            failure = e
        }
        pthread_mutex_unlock(&lock)
        if let failure { loop.execute { done(.failure(failure)) } }
    }

    /// With the lock held: makes `key` pending with `op` and returns the record that says so, or
    /// why it may not (the log is broken or closed, or the backlog is full for a new key).
    /// A refused mark of a key already pending forgets its captured state: the write that was
    /// to replace it happened on hot, so the flusher must read hot.
    private func admitLocked(_ key: TierKey, _ op: Op, captured: Captured, now: Int64) -> Result<KeyLogRecord, TierError> {
        if let failure = broken ?? (closed ? closedError : nil) {
            pending.forgetCaptured(key)
            return .failure(failure)
        }
        let sequence = nextSequence
        guard let since = pending.markIfRoom(key, op, sequence: sequence, now: now, captured: captured,
                                             maxKeys: options.maxPendingKeys, maxKeyBytes: options.maxPendingKeyBytes) else {
            return .failure(admissionFailure(key) ?? .unavailable("write-behind backlog full"))
        }
        nextSequence += 1
        return .success(KeyLogRecord(kind: op.recordKind, sequence: sequence, key: key, sinceMillis: since))
    }

    /// Hands the queued records to the writer (once per loop pass that marked: see `enqueue`).
    public func kick() {
        let wake: Bool = withLock {
            guard !queued.isEmpty, !wakeSubmitted else { return false }
            wakeSubmitted = true
            return true
        }
        if wake { writer.submit(Job(encoded: [], records: 0)) }
    }

    /// Under `.everysec`, asks the writer to sync records appended unsynced for a second or more;
    /// call it about once a second from any loop (the flusher's tick does).
    public func syncIfDue() {
        guard options.sync == .everysec else { return }
        let now = wallClockMillis()
        if withLock({ syncDue(unsynced, now: now) }) { writer.submit(Job(encoded: [], records: 0, sync: true)) }
    }

    /// Under `.everysec`, with the lock held: records are unsynced and the last sync is a second old.
    func syncDue(_ unsynced: Bool, now: Int64) -> Bool {
        options.sync == .everysec && unsynced && now - lastSyncMillis >= 1000
    }

    var closedError: TierError { .unavailable("key log \(path) is closed") }

    /// Why `key`, not pending yet, may not become pending (the backlog's limits), if so.
    private func admissionFailure(_ key: TierKey) -> TierError? {
        if pending.count >= options.maxPendingKeys {
            return .unavailable("write-behind backlog full: \(pending.count) keys pending (limit \(options.maxPendingKeys))")
        }
        if pending.keyBytes + key.bytes.count > options.maxPendingKeyBytes {
            return .unavailable("write-behind backlog full: \(pending.keyBytes) key bytes pending (limit \(options.maxPendingKeyBytes))")
        }
        return nil
    }

    // MARK: - Pending set

    /// True while a delete of `key` is owed below: reads must treat the key as absent there.
    public func isPendingDelete(_ key: TierKey) -> Bool {
        withLock { pending.current(key)?.op == .delete }
    }

    /// The latest op of `key` and the state its write left, if it is pending.
    public func pendingState(_ key: TierKey) -> (op: Op, captured: Captured)? {
        withLock { pending.state(key) }
    }

    /// Forgets the captured states of the pending keys of `db` (nil: every db): FLUSHDB on hot
    /// made them stale, so their flushes read hot.
    public func forgetCaptured(db: Int?) {
        withLock { pending.forgetCaptured(db: db) }
    }

    /// Pending keys not checked out: what `takeBatch` could hand out now.
    public var availableCount: Int { withLock { pending.count - pending.checkedOut } }

    /// The latest pending op of `key`, if any.
    public func pendingItem(_ key: TierKey) -> Item? {
        withLock { pending.current(key) }
    }

    /// Up to `max` pending keys, oldest first, none already handed out. Each stays checked out
    /// until `complete` or `release`, so one key is never flushed twice at once.
    /// `dueBy`: only keys that became pending by then (Unix ms), so a key written often waits
    /// to be flushed once (`Flusher.Options.delayMillis`).
    public func takeBatch(max: Int, dueBy: Int64 = .max) -> [Item] {
        withLock { pending.take(max: max, dueBy: dueBy) }
    }

    /// Marks `key` flushed up to `sequence`. If a newer op arrived meanwhile the key stays
    /// pending (and `takeBatch` hands it out again); returns whether it was cleared.
    @discardableResult
    public func complete(_ key: TierKey, sequence: UInt64) -> Bool {
        withLock { completeLocked(key, sequence: sequence) }
    }

    private func completeLocked(_ key: TierKey, sequence: UInt64) -> Bool {
        guard pending.complete(key, sequence: sequence) else { return false }
        // Not waited for: if it is lost in a crash, replay only flushes the key once more.
        let record = KeyLogRecord(kind: .done, sequence: sequence, key: key, sinceMillis: 0)
        if options.sync != .always {
            _ = enqueue(record)
        } else if writer.submit(Job(encoded: record.encoded, records: 1)) {
            counters.appends += 1
        }
        return true
    }

    /// Under `.everysec` and `.no`, with the lock held: a record nobody waits for. The writer gets
    /// the queue at the end of the marking loop's pass (the task returned, to schedule once the
    /// lock is released), so a pass's marks cost one hand-off, not one each; records queued
    /// without a loop go with the next hand-off or the flusher's tick.
    private func enqueue(_ record: KeyLogRecord, kickOn loop: EventLoop? = nil) -> DeferredTask? {
        record.encode(into: &queued)
        queuedRecords += 1
        counters.appends += 1
        guard let loop else { return nil }
        let id = ObjectIdentifier(loop)
        if let task = kickers[id] { return task }
        let task = DeferredTask(loop: loop) { [weak self] in self?.kick() }
        kickers[id] = task
        return task
    }

    /// `complete` for each item of a flushed batch, under one lock; returns how many were cleared.
    public func complete(_ items: [Item]) -> Int {
        withLock { items.reduce(0) { $0 + (completeLocked($1.key, sequence: $1.sequence) ? 1 : 0) } }
    }

    /// Gives a checked-out key back without flushing it (a flusher stopping).
    public func release(_ key: TierKey) {
        withLock { pending.release(key) }
    }

    /// Every pending key with its latest op, oldest first.
    public var pendingItems: [Item] {
        withLock { pending.snapshot().map { Item(op: $0.kind == .delete ? .delete : .dirty, key: $0.key, sequence: $0.sequence, sinceMillis: $0.sinceMillis) } }
    }

    public var backlog: Backlog {
        let now = wallClockMillis()
        return withLock {
            let oldest = pending.oldestSinceMillis()
            return Backlog(dirty: pending.count - pending.deletes, deletes: pending.deletes,
                           checkedOut: pending.checkedOut, oldestAgeMillis: oldest.map { max(0, now - $0) } ?? 0)
        }
    }

    public var stats: Stats { withLock { counters } }

    /// The write or sync failure that made the log refuse marks, if any (for INFO and logs).
    public var writeFailure: TierError? { withLock { broken } }


    func withLock<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return body()
    }
}
