import CSQLite
import Reactor

extension SQLiteDatabase {
    /// Up to `limit` rows of database `db` in key order, after the key `after` (nil: from the
    /// first): each key, its expiry, and its type when the envelope is version 1 (version 2 seals
    /// it). Uses the (db, key) primary key, so a page costs a range read, whatever the table size.
    func listKeys(db index: Int, after: [UInt8]?, limit: Int) throws(TierError) -> [ListedKey] {
        // Rare enough (SCAN, KEYS, DBSIZE below hot) to prepare when used.
        let stmt = try prepare("""
            SELECT key, expires_ms, substr(entry, 4, 2) FROM entries
            WHERE db = ?1 AND (?3 = 0 OR key > ?2) ORDER BY key LIMIT ?4
            """)
        defer { sqlite3_finalize(stmt) }
        sqlite3_bind_int64(stmt, 3, after == nil ? 0 : 1)
        sqlite3_bind_int64(stmt, 4, Int64(max(1, limit)))
        var rows = [ListedKey]()
        let rc = bindKey(stmt, TierKey(db: index, after ?? [])) { () -> Int32 in
            while true {
                let rc = sqlite3_step(stmt)
                guard rc == SQLITE_ROW else { return rc }
                let key = Self.blob(stmt, 0)
                let expiry: Int64? = sqlite3_column_type(stmt, 1) == SQLITE_NULL ? nil : sqlite3_column_int64(stmt, 1)
                let head = Self.blob(stmt, 2)
                let type = head.count == 2 && head[0] == EntryEnvelope.magic[3] ? ValueType(code: head[1]) : nil
                rows.append(ListedKey(key: TierKey(db: index, key), type: type, expiresAtMillis: expiry))
            }
        }
        guard rc == SQLITE_DONE else { throw error(rc, "listing keys") }
        return rows
    }

    private static func blob(_ stmt: OpaquePointer, _ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(stmt, column))
        guard count > 0, let p = sqlite3_column_blob(stmt, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: count))
    }
}

extension SQLiteTier {
    /// The continuation is the last key listed, in hex.
    public func list(db: Int, after: String?, limit: Int, on loop: EventLoop,
                     _ done: @escaping (Result<KeyPage, TierError>) -> Void) {
        let start: [UInt8]?
        if let after {
            guard let bytes = TierNames.unhex(Array(after.utf8)) else { loop.execute { done(.failure(.failed("bad listing position"))) }; return }
            start = bytes
        } else {
            start = nil
        }
        submitOne(loop, writes: false, done) { database, _ throws(TierError) in
            let keys = try database.listKeys(db: db, after: start, limit: limit)
            let next = keys.count < max(1, limit) ? nil : keys.last.map { String(decoding: TierNames.hex($0.key.bytes), as: UTF8.self) }
            return KeyPage(keys: keys, next: next)
        }
    }
}
