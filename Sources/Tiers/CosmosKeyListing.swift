extension CosmosTier {
    /// The container's feed (List Documents), `limit` items per page, with the service's
    /// continuation token. Cosmos has no listing of ids alone: a page returns whole items, so
    /// listing costs about what reading every item once costs (RU grow with item size). An item
    /// belongs to database `db` by its `tp_db` (absent: 0).
    public func list(db: Int, after: String?, limit: Int, _ done: @escaping (Result<KeyPage, TierError>) -> Void) {
        readFeed(after, pageSize: limit) { r in
            done(r.map { docs, next in KeyPage(keys: docs.compactMap { Self.listed($0, db: db) }, next: next) })
        }
    }

    private static func listed(_ doc: JSONValue, db: Int) -> ListedKey? {
        guard let id = doc["id"]?.string else { return nil }
        var listed = EntryMetadata.listed(name: id, db: db) { name in
            switch doc[name] {
            case .string(let s)?: return s
            case .number(let n)?: return n
            default: return nil
            }
        }
        // The seed's items carry only `ttl`: their expiry is `_ts + ttl`.
        if listed?.expiresAtMillis == nil, let ttl = doc["ttl"]?.int, ttl > 0, let ts = doc["_ts"]?.int {
            listed?.expiresAtMillis = (ts + ttl) * 1000
        }
        return listed
    }
}
