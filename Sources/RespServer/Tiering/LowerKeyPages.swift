import Tiers

/// What the keyspace commands keep of a listed key.
struct KeyFilter {
    /// MATCH's pattern (nil: every key).
    var match: GlobPattern?
    /// TYPE's name, lower-cased (nil: every type). A name no lower tier stores (a module's type)
    /// matches nothing below.
    var type: String?
}

/// Pages of the lower tiers' listings of one database, reduced to the keys a lookup through the
/// cascade would find there: tiered, no delete of it owed below (key log), not deleted by a
/// write-behind state not yet flushed, not expired, of the database the client sees (SWAPDB's
/// map applied), matching the filter. Keys come back in the client's database.
struct LowerKeyPages {
    let access: TierAccess
    /// The client's database.
    let db: Int
    /// The lower tiers in cascade order.
    let tiers: [(role: LowerTier, tier: Tier)]

    init(access: TierAccess, db: Int) {
        self.access = access
        self.db = db
        tiers = [(LowerTier.warm, access.warm), (.cold, access.cold)].compactMap { role, tier in tier.map { (role, $0) } }
    }

    /// One page of tier `index`'s listing from `after`. `skipWarmHeld`: a cold key that warm also
    /// holds is left out (the cascade would find warm's copy first, and a scan lists warm's keys
    /// already); that costs one read of warm per cold key listed.
    func page(_ index: Int, after: String?, limit: Int, filter: KeyFilter, skipWarmHeld: Bool,
              _ done: @escaping (Result<(keys: [[UInt8]], next: String?), TierError>) -> Void) {
        let (role, tier) = tiers[index]
        let physicalDB = access.core.databases?.physical(db) ?? db
        tier.list(db: physicalDB, after: after, limit: min(max(limit, 1), 1000)) { [self] result in
            switch result {
            case .failure(let e):
                done(.failure(TierEntryLog.naming(e, role, tier.name)))
            case .success(let page):
                let live = page.keys.filter(isLive)
                let typed = live.filter { filter.type == nil || $0.type == nil || $0.type!.rawValue == filter.type }
                resolveTypes(typed, tier: tier, filter: filter) { kept in
                    let warm = skipWarmHeld && role == .cold ? access.warm : nil
                    dropHeld(kept, by: warm) { done($0.map { (keys: $0, next: page.next) }) }
                }
            }
        }
        func isLive(_ listed: ListedKey) -> Bool {
            let key = TierKey(db: db, listed.key.bytes)
            let core = access.core
            guard !listed.isExpired(at: wallClockMillis()), core.isTiered(key),
                  filter.match.map({ $0.matches(key.bytes) }) ?? true else { return false }
            if let pending = core.keyLog?.pendingState(key), pending.op == .delete || pending.captured == .absent { return false }
            return true
        }
    }

    /// The keys whose type matches the filter, reading the entries whose listing did not say it
    /// (sealed ones).
    private func resolveTypes(_ keys: [ListedKey], tier: Tier, filter: KeyFilter, _ done: @escaping ([ListedKey]) -> Void) {
        let unknown = keys.filter { $0.type == nil }
        guard let wanted = filter.type, !unknown.isEmpty else { done(keys); return }
        tier.getMany(unknown.map(\.key)) { results in
            var found = [[UInt8]: ValueType]()
            for (listed, r) in zip(unknown, results) { if case .success(let e?) = r { found[listed.key.bytes] = e.type } }
            done(keys.filter { ($0.type ?? found[$0.key.bytes])?.rawValue == wanted })
        }
    }

    /// `keys` without those `warm` holds live (all of them when `warm` is nil).
    private func dropHeld(_ keys: [ListedKey], by warm: Tier?, _ done: @escaping (Result<[[UInt8]], TierError>) -> Void) {
        guard let warm, !keys.isEmpty else { done(.success(keys.map(\.key.bytes))); return }
        warm.getMany(keys.map(\.key)) { results in
            var kept = [[UInt8]]()
            for (listed, r) in zip(keys, results) {
                switch r {
                case .success(let entry?) where !entry.isExpired(at: wallClockMillis()): continue
                case .success: kept.append(listed.key.bytes)
                case .failure(let e): done(.failure(TierEntryLog.naming(e, .warm, warm.name))); return
                }
            }
            done(.success(kept))
        }
    }

    /// Every live key of every lower tier (once each), page after page: what KEYS and DBSIZE add
    /// to hot's. Holds the names in memory for the command's duration.
    func all(filter: KeyFilter, _ done: @escaping (Result<[[UInt8]], TierError>) -> Void) {
        var seen = Set<[UInt8]>()
        var order = [[UInt8]]()
        func walk(_ index: Int, _ after: String?) {
            guard index < tiers.count else { done(.success(order)); return }
            page(index, after: after, limit: 1000, filter: filter, skipWarmHeld: false) { result in
                switch result {
                case .failure(let e): done(.failure(e))
                case .success(let page):
                    for k in page.keys where seen.insert(k).inserted { order.append(k) }
                    if let next = page.next { walk(index, next) } else { walk(index + 1, nil) }
                }
            }
        }
        walk(0, nil)
    }
}
