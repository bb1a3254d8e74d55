import CSQLite

/// The SQLite connection behind `SQLiteTier`, with its prepared statements. Used only by the
/// tier's worker thread (after `open`, which runs on the caller so startup errors surface at once).
///
/// Schema (version 1, in `PRAGMA user_version`):
///
///     entries(db INTEGER, key BLOB, expires_ms INTEGER NULL, entry BLOB, PRIMARY KEY (db, key))
///
/// `entry` is an `EntryEnvelope` (v1); `expires_ms` repeats its expiry so expired rows can be
/// found by index without decoding. Rowid table on purpose: values can be megabytes, and
/// WITHOUT ROWID tables are for small rows.
final class SQLiteDatabase {
    static let schemaVersion: Int32 = 1
    /// Most memory SQLite's page cache may take, in KiB (see `init`).
    static let pageCacheKiB = 64 * 1024

    private var db: OpaquePointer?
    private var selectStmt: OpaquePointer?
    private var upsertStmt: OpaquePointer?
    private var deleteStmt: OpaquePointer?
    private var deleteExpiredStmt: OpaquePointer?
    private var purgeStmt: OpaquePointer?
    let path: String

    init(path: String) throws(TierError) {
        self.path = path
        // NOMUTEX: one thread at a time uses this connection (the worker), so SQLite's own
        // per-call mutex would only cost time.
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_close(db)
            db = nil
            throw .unavailable("cannot open SQLite database \(path): \(message)")
        }
        do throws(TierError) {
            // A writer that finds the file locked (another process, a backup) waits, not fails.
            sqlite3_busy_timeout(db, 5000)
            try exec("PRAGMA journal_mode=WAL")
            // NORMAL in WAL: a commit is durable against a process crash; a power loss can lose
            // the last commits but never corrupts the file. FULL would fsync every batch.
            try exec("PRAGMA synchronous=NORMAL")
            // A page cache that holds the working set (SQLite's default is 2 MiB): with the
            // default, random-key writes to a table of a few hundred thousand small entries
            // missed it on about every row, one pread per row written (measured: 1.2 preads
            // per write-behind SET). In WAL mode the cache survives between transactions since
            // this connection is the only writer. The cache grows only with pages used.
            try exec("PRAGMA cache_size=-\(Self.pageCacheKiB)")
            // Checkpoints rarer than SQLite's default of every 1000 WAL pages: random-key writes
            // put about one page per row in the WAL, and a checkpoint copies each distinct page
            // once however often it was rewritten, so a longer WAL (at most about 32 MiB, reset
            // at each checkpoint) copies fewer pages per row written.
            try exec("PRAGMA wal_autocheckpoint=8192")
            let version = try userVersion()
            guard version <= Self.schemaVersion else {
                throw TierError.failed("SQLite database \(path) has schema version \(version), newer than this tierproxy (\(Self.schemaVersion))")
            }
            try exec("""
                CREATE TABLE IF NOT EXISTS entries (
                    db INTEGER NOT NULL,
                    key BLOB NOT NULL,
                    expires_ms INTEGER,
                    entry BLOB NOT NULL,
                    PRIMARY KEY (db, key));
                CREATE INDEX IF NOT EXISTS entries_expiry ON entries(expires_ms) WHERE expires_ms IS NOT NULL;
                PRAGMA user_version = \(Self.schemaVersion);
                """)
            selectStmt = try prepare("SELECT expires_ms, entry FROM entries WHERE db = ?1 AND key = ?2")
            upsertStmt = try prepare("""
                INSERT INTO entries (db, key, expires_ms, entry) VALUES (?1, ?2, ?3, ?4)
                ON CONFLICT (db, key) DO UPDATE SET expires_ms = excluded.expires_ms, entry = excluded.entry
                """)
            deleteStmt = try prepare("DELETE FROM entries WHERE db = ?1 AND key = ?2")
            deleteExpiredStmt = try prepare("DELETE FROM entries WHERE db = ?1 AND key = ?2 AND expires_ms <= ?3")
            purgeStmt = try prepare("""
                DELETE FROM entries WHERE rowid IN
                (SELECT rowid FROM entries WHERE expires_ms <= ?1 LIMIT ?2)
                """)
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    func close() {
        for stmt in [selectStmt, upsertStmt, deleteStmt, deleteExpiredStmt, purgeStmt] { sqlite3_finalize(stmt) }
        selectStmt = nil; upsertStmt = nil; deleteStmt = nil; deleteExpiredStmt = nil; purgeStmt = nil
        if let db { sqlite3_close_v2(db) }
        db = nil
    }

    // MARK: - Transactions

    /// IMMEDIATE: take the write lock up front, so a batch that reads then writes (lazy expiry
    /// deletes) never meets SQLITE_BUSY halfway through.
    func begin() throws(TierError) { try exec("BEGIN IMMEDIATE") }
    func commit() throws(TierError) { try exec("COMMIT") }
    func rollback() { if !inAutocommit { _ = try? exec("ROLLBACK") } }

    /// True when no transaction is open (SQLite ends one by itself after some errors).
    var inAutocommit: Bool { sqlite3_get_autocommit(db) != 0 }

    // MARK: - Entries

    /// The stored envelope and its expiry, or nil if absent.
    func select(_ key: TierKey) throws(TierError) -> (expiresAt: Int64?, envelope: [UInt8])? {
        guard let stmt = selectStmt else { throw closedError }
        defer { sqlite3_reset(stmt) }
        let rc = bindKey(stmt, key) { sqlite3_step(stmt) }
        switch rc {
        case SQLITE_DONE: return nil
        case SQLITE_ROW:
            let expiry: Int64? = sqlite3_column_type(stmt, 0) == SQLITE_NULL ? nil : sqlite3_column_int64(stmt, 0)
            let count = Int(sqlite3_column_bytes(stmt, 1))
            var bytes = [UInt8](repeating: 0, count: count)
            if count > 0, let p = sqlite3_column_blob(stmt, 1) {
                bytes.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(start: p, count: count)) }
            }
            return (expiry, bytes)
        default: throw error(rc, "reading")
        }
    }

    func upsert(_ key: TierKey, expiresAt: Int64?, envelope: [UInt8]) throws(TierError) {
        guard let stmt = upsertStmt else { throw closedError }
        defer { sqlite3_reset(stmt) }
        if let e = expiresAt { sqlite3_bind_int64(stmt, 3, e) } else { sqlite3_bind_null(stmt, 3) }
        let rc = bindKey(stmt, key) {
            envelope.withUnsafeBytes { p in
                // STATIC: the bytes outlive the step; SQLite need not copy a large value.
                sqlite3_bind_blob64(stmt, 4, p.baseAddress, sqlite3_uint64(p.count), nil)
                return sqlite3_step(stmt)
            }
        }
        guard rc == SQLITE_DONE else { throw error(rc, "writing") }
    }

    func delete(_ key: TierKey) throws(TierError) {
        guard let stmt = deleteStmt else { throw closedError }
        defer { sqlite3_reset(stmt) }
        let rc = bindKey(stmt, key) { sqlite3_step(stmt) }
        guard rc == SQLITE_DONE else { throw error(rc, "deleting") }
    }

    /// Deletes the row only if it is (still) expired at `now`.
    func deleteIfExpired(_ key: TierKey, now: Int64) throws(TierError) {
        guard let stmt = deleteExpiredStmt else { throw closedError }
        defer { sqlite3_reset(stmt) }
        sqlite3_bind_int64(stmt, 3, now)
        let rc = bindKey(stmt, key) { sqlite3_step(stmt) }
        guard rc == SQLITE_DONE else { throw error(rc, "deleting an expired entry") }
    }

    /// Deletes up to `limit` rows expired at `now`; returns how many.
    func purgeExpired(now: Int64, limit: Int) throws(TierError) -> Int {
        guard let stmt = purgeStmt else { throw closedError }
        defer { sqlite3_reset(stmt) }
        sqlite3_bind_int64(stmt, 1, now)
        sqlite3_bind_int64(stmt, 2, Int64(limit))
        let rc = sqlite3_step(stmt)
        guard rc == SQLITE_DONE else { throw error(rc, "purging expired entries") }
        return Int(sqlite3_changes(db))
    }

    /// Deletes every row of database `index` (nil: every row); returns how many.
    func deleteEntries(inDatabase index: Int?) throws(TierError) -> Int {
        // Rare (FLUSHDB/FLUSHALL): prepared when used, not kept.
        let stmt = try prepare(index == nil ? "DELETE FROM entries" : "DELETE FROM entries WHERE db = ?1")
        defer { sqlite3_finalize(stmt) }
        if let index { sqlite3_bind_int64(stmt, 1, Int64(index)) }
        let rc = sqlite3_step(stmt)
        guard rc == SQLITE_DONE else { throw error(rc, "purging a database") }
        return Int(sqlite3_changes64(db))
    }

    /// "ok", or what `PRAGMA quick_check` found.
    func quickCheck() throws(TierError) -> String {
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &stmt, nil)
        guard rc == SQLITE_OK else { throw error(rc, "checking") }
        defer { sqlite3_finalize(stmt) }
        guard sqlite3_step(stmt) == SQLITE_ROW, let text = sqlite3_column_text(stmt, 0) else { throw error(rc, "checking") }
        return String(cString: text)
    }

    // MARK: - Plumbing

    /// Binds db (?1) and key (?2), then runs `body` while the key's bytes are pinned.
    func bindKey(_ stmt: OpaquePointer, _ key: TierKey, _ body: () -> Int32) -> Int32 {
        sqlite3_bind_int64(stmt, 1, Int64(key.db))
        return key.bytes.withUnsafeBytes { p in
            if p.count == 0 {
                // A nil pointer would bind NULL; the empty key is a zero-length blob.
                sqlite3_bind_zeroblob(stmt, 2, 0)
            } else {
                sqlite3_bind_blob(stmt, 2, p.baseAddress, Int32(p.count), nil)
            }
            let rc = body()
            sqlite3_clear_bindings(stmt)  // the pinned pointers die with this closure
            return rc
        }
    }

    private func userVersion() throws(TierError) -> Int32 {
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, nil)
        guard rc == SQLITE_OK else { throw error(rc, "reading the schema version") }
        defer { sqlite3_finalize(stmt) }
        guard sqlite3_step(stmt) == SQLITE_ROW else { throw error(rc, "reading the schema version") }
        return sqlite3_column_int(stmt, 0)
    }

    private func exec(_ sql: String) throws(TierError) {
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &message)
        defer { sqlite3_free(message) }
        guard rc == SQLITE_OK else {
            let text = message.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(rc))
            throw Self.classify(rc, "SQLite \(path): \(text)")
        }
    }

    func prepare(_ sql: String) throws(TierError) -> OpaquePointer {
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw error(rc, "preparing a statement") }
        return stmt
    }

    private var closedError: TierError { .unavailable("SQLite database \(path) is closed") }

    func error(_ rc: Int32, _ doing: String) -> TierError {
        let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
        return Self.classify(rc, "SQLite \(path) failed \(doing): \(message)")
    }

    /// Busy/locked/full/I/O errors may pass (retry later); corruption is data damage.
    private static func classify(_ rc: Int32, _ message: String) -> TierError {
        switch rc & 0xFF {
        case SQLITE_CORRUPT, SQLITE_NOTADB: return .corrupt(message)
        case SQLITE_TOOBIG: return .tooLarge(limit: 1_000_000_000)  // SQLITE_MAX_LENGTH's default
        case SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL, SQLITE_IOERR, SQLITE_CANTOPEN, SQLITE_READONLY:
            return .unavailable(message)
        default: return .failed(message)
        }
    }
}
