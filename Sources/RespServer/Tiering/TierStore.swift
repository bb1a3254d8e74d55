import Reactor
import Tiers

/// Writes of keys' new states to the lower tiers, many keys at once: every put to one tier goes
/// in one `putMany` and every delete in one `deleteMany`, each bounded by `tier-timeout` as one
/// operation, so a write-behind batch of 500 keys costs SQLite one transaction and the loop one
/// timer, not 500. A single write is a batch of one.
extension TierAccess {
    /// What the lower tiers must do for one key's state, per its placement rule.
    private struct KeyPlan {
        var put: (LowerTier, Entry)?
        var deletes: [LowerTier] = []
    }

    /// Makes the lower tiers hold each item's state, as `store` does for one; `done` gets one
    /// result per item, in order.
    func storeMany(_ items: [(TierKey, KeyState)], _ done: @escaping ([Result<Void, TierError>]) -> Void) {
        var results = [Result<Void, TierError>](repeating: .success(()), count: items.count)
        var puts: [LowerTier: [(Int, Entry)]] = [:]
        var deletes: [LowerTier: [Int]] = [:]
        let now = wallClockMillis()
        let configured = [LowerTier.warm, .cold].filter { tier($0) != nil }
        for (i, (key, state)) in items.enumerated() where hasLowerTiers && core.isTiered(key) {
            switch plan(key, state, configured, now: now) {
            case .failure(let e): results[i] = .failure(e)
            case .success(let p):
                if let (role, entry) = p.put { puts[role, default: []].append((i, entry)) }
                for role in p.deletes { deletes[role, default: []].append(i) }
            }
        }
        var remaining = puts.count + deletes.count
        if remaining == 0 { done(results); return }
        let stats = core.stats, absent = core.absentBelow
        func finished(_ indices: [Int], _ outcome: [Result<Void, TierError>]) {
            for (i, r) in zip(indices, outcome) {
                guard case .failure(let e) = r else { continue }
                stats.lowerFailures.add(1)
                if case .success = results[i] { results[i] = .failure(e) }
            }
            remaining -= 1
            if remaining == 0 { done(results) }
        }
        for (role, batch) in puts {
            guard let tier = tier(role) else { continue }
            stats.lowerWrites.add(batch.count)
            for (i, _) in batch { absent.notePresent(items[i].0, in: role) }
            let physicalItems = batch.map { (physical(items[$0.0].0), $0.1) }
            timedMany(tier, role, .put, batch.map { items[$0.0].0 }, bytes: batch.reduce(0) { $0 + $1.1.value.count },
                      { tier.putMany(physicalItems, $0) }) { finished(batch.map { $0.0 }, $0) }
        }
        for (role, batch) in deletes {
            guard let tier = tier(role) else { continue }
            stats.lowerDeletes.add(batch.count)
            let keys = batch.map { physical(items[$0].0) }
            timedMany(tier, role, .delete, batch.map { items[$0].0 }, { tier.deleteMany(keys, $0) }) { outcome in
                for (i, r) in zip(batch, outcome) {
                    if case .success = r { absent.noteAbsent(items[i].0, in: role) }
                }
                finished(batch, outcome)
            }
        }
    }

    private func tier(_ role: LowerTier) -> Tier? { role == .warm ? warm : cold }

    /// The value in the tier the rule places it, no copy in the others (skipping tiers known not
    /// to hold one); no copy anywhere for an absent or expired state.
    private func plan(_ key: TierKey, _ state: KeyState, _ configured: [LowerTier], now: Int64) -> Result<KeyPlan, TierError> {
        guard let entry = state.entry, !entry.isExpired(at: now) else { return .success(KeyPlan(deletes: configured)) }
        let placement: Placement
        do {
            placement = try core.rules.place(key.bytes, valueSize: entry.value.count, tiers: lowerTiers)
        } catch {
            return .failure(error as? TierError ?? .failed("\(error)"))
        }
        var p = KeyPlan()
        for role in configured {
            if role == placement.store { p.put = (role, entry) }
            else if !isKnownAbsent(key, in: role) { p.deletes.append(role) }
        }
        return .success(p)
    }

    /// One batched tier operation, bounded by `tier-timeout` (a late completion is ignored),
    /// counted and timed once per key, and logged per key when slower than `tier-slowlog-threshold`.
    func timedMany<T>(_ tier: Tier, _ role: LowerTier, _ op: TierOp, _ keys: [TierKey], bytes: Int = 0,
                      _ start: (@escaping ([Result<T, TierError>]) -> Void) -> Void,
                      _ done: @escaping ([Result<T, TierError>]) -> Void) {
        var finished = false
        let limit = core.tierTimeoutMillis
        let began = monotonicMicros()
        let metrics = self.metrics, settings = core.settings
        metrics.tierStarted(role)
        func account(_ outcomes: [(TierOutcome, TierError?, read: Int)]) {
            let micros = monotonicMicros() - began
            metrics.tierFinished(role, read: outcomes.reduce(0) { $0 + $1.read },
                                 written: outcomes.allSatisfy { $0.0 == .ok } ? bytes : 0)
            for (key, (outcome, error, _)) in zip(keys, outcomes) {
                metrics.recordTier(role, op, outcome, micros: micros)
                TierSlowLog.note(role, op, key, micros: micros, outcome: outcome, error: error, settings: settings)
            }
        }
        let timer = Timer(loop: loop, millis: limit) {
            guard !finished else { return }
            finished = true
            let error = TierError.unavailable("\(tier.name): no answer within tier-timeout (\(limit) ms)")
            account(keys.map { _ in (.timeout, error, 0) })
            done(keys.map { _ in .failure(error) })
        }
        start { results in
            timer.cancel()
            guard !finished else { return }
            finished = true
            account(results.map { result in
                switch result {
                case .success(let value):
                    if op == .get, let entry = value as? Entry? { return (entry == nil ? .miss : .hit, nil, entry?.value.count ?? 0) }
                    return (.ok, nil, 0)
                case .failure(let e):
                    return (.error, e, 0)
                }
            })
            done(results)
        }
    }
}
