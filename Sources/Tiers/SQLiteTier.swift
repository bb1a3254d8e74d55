import Reactor

/// The embedded warm tier: one SQLite file (WAL, `synchronous=NORMAL`), shared by every loop.
///
/// Every SQLite call runs on one worker thread. Callers on any loop queue jobs; the worker takes
/// everything queued and runs it in one transaction (group commit), so 64 writes in flight cost
/// one commit, not 64. Completions go back to each caller's loop, batched per loop. Reads see
/// writes queued before them (same connection, same order). If a batch's transaction fails,
/// every job in it fails (reads included, since they may have seen the rolled-back writes).
///
/// Envelopes are encoded on the caller's loop and decoded there, so the single worker thread
/// spends its time in SQLite.
public final class SQLiteTier: SharedTier {
    public let name: String
    /// Largest value a read will inflate (gzip entries); larger reads fail `.tooLarge`.
    public let valueLimit: Int
    /// Seals entries (envelope version 2) when `tier-encryption-key` is set; nil: version 1.
    public let cipher: EntryCipher?
    private let worker: WorkerThread<Job>
    private let database: SQLiteDatabase

    /// Opens (creating if needed) the database at `path` and starts the worker. Throws if the
    /// file cannot be opened or is not a tierproxy database.
    public init(path: String, valueLimit: Int = 512 << 20, cipher: EntryCipher? = nil) throws(TierError) {
        let database = try SQLiteDatabase(path: path)
        self.database = database
        self.name = "sqlite:\(path)"
        self.valueLimit = valueLimit
        self.cipher = cipher
        worker = WorkerThread(name: "tp-sqlite") { jobs in Self.runBatch(jobs, database) }
    }

    deinit { close() }

    /// Finishes queued work and closes the database; later calls fail `.unavailable`.
    public func close() {
        worker.stop()
        database.close()
    }

    /// Jobs waiting for the worker.
    public var queueDepth: Int { worker.depth }

    /// Transactions committed (or tried) and the jobs they carried: jobs / batches is the
    /// group-commit factor.
    public var served: (batches: Int, jobs: Int) { worker.served }

    func suspendWorker() { worker.suspend() }
    func resumeWorker() { worker.resume() }

    // MARK: - SharedTier

    public func get(_ keys: [TierKey], on loop: EventLoop, _ done: @escaping ([Result<Entry?, TierError>]) -> Void) {
        let (valueLimit, cipher) = (self.valueLimit, self.cipher)
        submit(loop, count: keys.count, writes: false, done) { db, now in
            var rows = [Result<[UInt8]?, TierError>]()
            rows.reserveCapacity(keys.count)
            for key in keys {
                do throws(TierError) {
                    guard let row = try db.select(key) else { rows.append(.success(nil)); continue }
                    if let e = row.expiresAt, e <= now {
                        // Lazy expiry; the read's answer is "absent" whether or not this lands.
                        try? db.deleteIfExpired(key, now: now)
                        rows.append(.success(nil))
                    } else {
                        rows.append(.success(row.envelope))
                    }
                } catch {
                    rows.append(.failure(error))
                }
            }
            return {
                // Decoding happens here, on the caller's loop.
                done(zip(keys, rows).map { key, row in
                    row.flatMap { bytes in
                        guard let bytes else { return .success(nil) }
                        return Self.decode(bytes, for: key, now: now, valueLimit: valueLimit, cipher: cipher)
                    }
                })
            }
        }
    }

    public func put(_ items: [(TierKey, Entry)], on loop: EventLoop, _ done: @escaping ([Result<Void, TierError>]) -> Void) {
        // Sealing (when configured) happens here, on the caller's loop, like encoding.
        let cipher = self.cipher
        let rows = items.map { key, entry in
            (key, entry.expiresAtMillis, Result { () throws(TierError) in try EntryEnvelope.encode(key: key, entry: entry, cipher: cipher) })
        }
        submit(loop, count: rows.count, writes: true, done) { db, _ in
            let results = rows.map { key, expiry, envelope -> Result<Void, TierError> in
                do throws(TierError) { try db.upsert(key, expiresAt: expiry, envelope: envelope.get()) } catch { return .failure(error) }
                return .success(())
            }
            return { done(results) }
        }
    }

    public func delete(_ keys: [TierKey], on loop: EventLoop, _ done: @escaping ([Result<Void, TierError>]) -> Void) {
        submit(loop, count: keys.count, writes: true, done) { db, _ in
            let results = keys.map { key -> Result<Void, TierError> in
                do throws(TierError) { try db.delete(key) } catch { return .failure(error) }
                return .success(())
            }
            return { done(results) }
        }
    }

    public func check(on loop: EventLoop, _ done: @escaping (Result<String, TierError>) -> Void) {
        let name = self.name
        submitOne(loop, writes: false, done) { db, _ throws(TierError) in
            let verdict = try db.quickCheck()
            guard verdict == "ok" else { throw .corrupt("\(name): \(verdict)") }
            return "ok: \(name)"
        }
    }

    /// Deletes every row of database `db` (nil: every row), expired ones included, in one
    /// transaction after every job queued before it.
    public func purge(db: Int?, on loop: EventLoop, _ done: @escaping (Result<Int, TierError>) -> Void) {
        submitOne(loop, writes: true, done) { database, _ throws(TierError) in try database.deleteEntries(inDatabase: db) }
    }

    /// Deletes up to `limit` expired rows (reads never serve them anyway; this reclaims space).
    /// Call it from a timer; it competes with requests for the worker only briefly.
    public func purgeExpired(limit: Int = 1000, on loop: EventLoop, _ done: @escaping (Result<Int, TierError>) -> Void) {
        submitOne(loop, writes: true, done) { db, now throws(TierError) in try db.purgeExpired(now: now, limit: limit) }
    }

    // MARK: - Worker side

    /// One caller request: `run` executes on the worker inside the batch's transaction and
    /// returns the completion for the caller's loop; `fail` makes the completion used instead
    /// when the batch cannot commit.
    struct Job {
        let loop: EventLoop
        let writes: Bool
        let run: (SQLiteDatabase, Int64) -> () -> Void
        let fail: (TierError) -> () -> Void
    }

    /// Queues `run`; `count` is how many results `done` expects (a failure produces that many).
    private func submit<T>(_ loop: EventLoop, count: Int, writes: Bool,
                           _ done: @escaping ([Result<T, TierError>]) -> Void,
                           _ run: @escaping (SQLiteDatabase, Int64) -> () -> Void) {
        if count == 0 {
            loop.execute { done([]) }
            return
        }
        let fail: (TierError) -> () -> Void = { error in { done(Array(repeating: .failure(error), count: count)) } }
        if !worker.submit(Job(loop: loop, writes: writes, run: run, fail: fail)) {
            loop.execute(fail(.unavailable("\(name) is closed")))
        }
    }

    /// Queues `body` as a job with one result.
    func submitOne<T>(_ loop: EventLoop, writes: Bool, _ done: @escaping (Result<T, TierError>) -> Void,
                              _ body: @escaping (SQLiteDatabase, Int64) throws(TierError) -> T) {
        submit(loop, count: 1, writes: writes, { (r: [Result<T, TierError>]) in done(r[0]) }) { db, now in
            let result: Result<T, TierError>
            do throws(TierError) { result = .success(try body(db, now)) } catch { result = .failure(error) }
            return { done(result) }
        }
    }

    private static func runBatch(_ jobs: [Job], _ db: SQLiteDatabase) {
        let now = wallClockMillis()
        var completions = [() -> Void]()
        completions.reserveCapacity(jobs.count)
        var failure: TierError?
        do throws(TierError) {
            try db.begin()
            for job in jobs {
                completions.append(job.run(db, now))
                // Some errors (disk full, I/O) make SQLite roll the whole transaction back.
                if db.inAutocommit { throw TierError.unavailable("\(db.path): transaction rolled back by SQLite") }
            }
            try db.commit()
        } catch {
            db.rollback()
            failure = error
        }
        var batch = CompletionBatch()
        for (i, job) in jobs.enumerated() {
            batch.add(job.loop, failure.map { job.fail($0) } ?? completions[i])
        }
        batch.deliver()
    }

    static func decode(_ bytes: [UInt8], for key: TierKey, now: Int64, valueLimit: Int,
                       cipher: EntryCipher?) -> Result<Entry?, TierError> {
        do throws(TierError) {
            let contents = try EntryEnvelope.decode(bytes, cipher: cipher)
            guard contents.key == key else { return .failure(.corrupt("row for \(key.db)/\(key.bytes.count)-byte key holds another key")) }
            let entry = try contents.entry(valueLimit: valueLimit)
            return .success(entry.isExpired(at: now) ? nil : entry)
        } catch {
            return .failure(error)
        }
    }
}
