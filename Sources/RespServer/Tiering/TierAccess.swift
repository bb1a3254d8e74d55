import Reactor
import Tiers

/// One loop's way to the lower tiers: lookups through the shared single-flight table and negative
/// cache, writes of a key's new state per its placement rule, each bounded by `tier-timeout`.
/// Every completion runs on this loop.
final class TierAccess {
    let core: TieringCore
    let loop: EventLoop
    let warm: Tier?
    let cold: Tier?
    let lowerTiers: LowerTiers
    /// This loop's tier counters and latency histograms (/metrics, INFO, TIERS STATS).
    let metrics: LoopMetrics

    /// The warm item limit for every warm backend (Cosmos DB's 2 MB), so placement does not
    /// depend on which backend runs: a value that would not fit Cosmos goes to cold on SQLite too.
    static let warmItemLimit = 2 * 1024 * 1024

    /// `warmItemLimit`: the value size placement allows in warm (smaller than `warmItemLimit` when
    /// entries are sealed, since Cosmos then stores them base64).
    init(core: TieringCore, loop: EventLoop, warm: Tier?, cold: Tier?, metrics: LoopMetrics,
         warmItemLimit: Int = TierAccess.warmItemLimit) {
        self.core = core
        self.metrics = metrics
        self.loop = loop
        self.warm = warm
        self.cold = cold
        lowerTiers = LowerTiers(hasWarm: warm != nil, warmItemLimit: warmItemLimit, hasCold: cold != nil)
    }

    var hasLowerTiers: Bool { warm != nil || cold != nil }

    /// The loop's own connection to hot, and the db it is in: where a copy found below is checked
    /// before it is promoted (`RDBVersions`). Set by the worker.
    weak var hot: HotClient?
    var hotDB = 0

    /// `store` calls of this loop pass, and the task that sends them at its end.
    private var storeQueue: [(TierKey, KeyState, (Result<Void, TierError>) -> Void)] = []
    private lazy var storeAtPassEnd = DeferredTask(loop: loop) { [unowned self] in sendQueuedStores() }

    /// The key as the lower tiers store it: in the database `DatabaseMap` says (SWAPDB).
    func physical(_ key: TierKey) -> TierKey { core.databases?.physical(key) ?? key }

    // MARK: - Lookups

    /// The live copy of `key` below hot, if any: the write-behind state not yet flushed first,
    /// then warm, then cold. A key with a delete still owed below, or found absent everywhere
    /// moments ago, is absent without asking. Concurrent lookups of one key, from any loop, share
    /// one read of each tier.
    ///
    /// `locked`: the caller holds the key's lock (a command's bring-up), so nothing of this
    /// process writes the key meanwhile, and a miss it read from the tiers themselves teaches
    /// `AbsentBelow` that no tier holds the key: the command's own store then skips the deletes
    /// (one request each on Cosmos DB or Blob Storage for every new key).
    func lookup(_ key: TierKey, locked: Bool = false, _ done: @escaping (Result<Found?, TierError>) -> Void) {
        guard hasLowerTiers, core.isTiered(key) else { done(.success(nil)); return }
        core.stats.lookups.add(1)
        if let pending = core.keyLog?.pendingState(key) {  // the write-behind state not flushed yet
            if let state = KeyState(pending.captured) {
                done(.success(state.entry.map { Found(entry: $0, tier: .warm) }))
                return
            }
            if pending.op == .delete { done(.success(nil)); return }
        }
        // A blocking pop may have just emptied it on hot: its older copy below must not come
        // back before that pop's own capture says what is left (`BlockingMark`).
        if core.mayBeDeletedByBlocking(key) { done(.success(nil)); return }
        if core.negative.isKnownAbsent(key, now: loop.nowMillis) {
            core.stats.negativeHits.add(1)
            done(.success(nil))
            return
        }
        let generation = core.generations.snapshot(key)
        core.flights.lookup(key, generation: generation, on: loop, start: { finish in
            self.readBelow(key) { result in
                switch result {
                case .success(nil):
                    self.core.negative.rememberAbsent(key, since: generation, now: self.loop.nowMillis)
                    if locked && self.core.generations.unchanged(since: generation) { self.noteAbsentEverywhere(key) }
                case .success(let found?):
                    self.core.rdbVersions.check(key, found, hot: self.hot, homeDB: self.hotDB) { checked in
                        if case .failure(let e) = checked { TierEntryLog.notRestorable(found.tier, key, e, settings: self.core.settings) }
                        finish(checked)
                    }
                    return
                case .failure:
                    break
                }
                finish(result)
            }
        }, done: done)
    }

    private func noteAbsentEverywhere(_ key: TierKey) {
        if warm != nil { core.absentBelow.noteAbsent(key, in: .warm) }
        if cold != nil { core.absentBelow.noteAbsent(key, in: .cold) }
    }

    /// True if no lower tier can hold `key` now, so a lookup would find nothing: no write-behind
    /// state or delete of it is pending, and this process deleted it in every lower tier last
    /// (`AbsentBelow`) or found it absent everywhere moments ago (the negative cache). Asked
    /// with the key's lock held.
    func isKnownAbsentBelow(_ key: TierKey) -> Bool {
        if let pending = core.keyLog?.pendingState(key) {
            if pending.captured != .unknown { return false }
            if pending.op == .delete { return true }
        }
        if core.negative.isKnownAbsent(key, now: loop.nowMillis) { return true }
        return (warm == nil || isKnownAbsent(key, in: .warm)) && (cold == nil || isKnownAbsent(key, in: .cold))
    }

    /// True if `tier` cannot hold `key` now: this process deleted it there last (`AbsentBelow`),
    /// or the tier itself knows it never held it (`Tier.mayHold`). Asked with the key's lock held.
    func isKnownAbsent(_ key: TierKey, in role: LowerTier) -> Bool {
        if core.absentBelow.isKnownAbsent(key, in: role) { return true }
        guard let tier = role == .warm ? warm : cold else { return true }
        return !tier.mayHold(physical(key))
    }

    /// Warm, then cold when warm does not have it. An error from a tier that had to be asked is
    /// the answer: a nil then could be a lie.
    private func readBelow(_ key: TierKey, _ done: @escaping (Result<Found?, TierError>) -> Void) {
        // A tier answers in the order it was asked: this pass's queued writes go first.
        sendQueuedStores()
        let stats = core.stats
        let tiers: [(LowerTier, Tier, AtomicCounter)] = [(.warm, warm, stats.warmHits), (.cold, cold, stats.coldHits)]
            .compactMap { role, tier, hits in tier.map { (role, $0, hits) } }
        func ask(_ i: Int) {
            guard i < tiers.count else { stats.misses.add(1); done(.success(nil)); return }
            let (role, tier, hits) = tiers[i]
            timed(tier, role, .get, key, { tier.get(self.physical(key), $0) }) { result in
                switch result {
                case .success(let entry?) where !entry.isExpired(at: wallClockMillis()):
                    hits.add(1)
                    done(.success(Found(entry: entry, tier: role)))
                case .success:
                    ask(i + 1)
                case .failure(let e):
                    stats.tierErrors.add(1)
                    let named = TierEntryLog.naming(e, role, tier.name)
                    if case .corrupt = named { TierEntryLog.unreadable(role, key, named, settings: self.core.settings) }
                    done(.failure(named))
                }
            }
        }
        ask(0)
    }

    // MARK: - Writes

    /// Makes the lower tiers hold `state` for `key`, as its rule places it: the value in one tier
    /// and no copy in the others, or no copy anywhere. Hot-only keys are left alone.
    ///
    /// Stores asked for during one loop pass go below together at its end (`storeMany`): the
    /// write-throughs of a pass of pipelined SETs cost one SQLite transaction and one timer.
    func store(_ key: TierKey, _ state: KeyState, _ done: @escaping (Result<Void, TierError>) -> Void) {
        storeQueue.append((key, state, done))
        storeAtPassEnd.schedule()
    }

    /// Sends the stores queued in this pass now (before a read that must see them).
    func sendQueuedStores() {
        let queued = storeQueue
        storeQueue.removeAll(keepingCapacity: true)
        guard !queued.isEmpty else { return }
        storeMany(queued.map { ($0.0, $0.1) }) { results in
            for (item, result) in zip(queued, results) { item.2(result) }
        }
    }

    /// Copies hot took from below (promotions): counted, and each one found in cold copied to
    /// warm (`copyUp`); `done` once every copy is where it belongs.
    func promoted(_ found: [(TierKey, Found)], _ done: @escaping () -> Void) {
        core.stats.promotions.add(found.count)
        for (_, f) in found { metrics.promoted(f.tier) }
        var pending = found.count
        if pending == 0 { done(); return }
        for (k, f) in found {
            copyUp(k, f) {
                pending -= 1
                if pending == 0 { done() }
            }
        }
    }

    /// Copies a value found in cold to warm, when warm is where the key's rule puts it.
    func copyUp(_ key: TierKey, _ found: Found, _ done: @escaping () -> Void) {
        guard found.tier == .cold, let warm,
              let placement = try? core.rules.place(key.bytes, valueSize: found.entry.value.count, tiers: lowerTiers),
              placement.store == .warm else { done(); return }
        core.absentBelow.notePresent(key, in: .warm)
        timed(warm, .warm, .put, key, bytes: found.entry.value.count, { warm.put(physical(key), found.entry, $0) }) { _ in done() }
    }

    /// Deletes every entry of `db` (nil: every db) in every lower tier.
    func purge(db: Int?, _ done: @escaping (Result<Void, TierError>) -> Void) {
        let tiers = [warm, cold].compactMap { $0 }
        core.absentBelow.reset()
        var remaining = tiers.count
        var failure: TierError?
        if remaining == 0 { done(.success(())); return }
        let target = db.map { core.databases?.physical($0) ?? $0 }
        for tier in tiers {
            tier.purge(db: target) { result in
                if case .failure(let e) = result { failure = failure ?? e }
                remaining -= 1
                if remaining == 0 { done(failure.map { .failure($0) } ?? .success(())) }
            }
        }
    }

    /// Runs one tier operation as a batch of one (`timedMany`): bounded by `tier-timeout`,
    /// counted, timed and slow-logged.
    private func timed<T>(_ tier: Tier, _ role: LowerTier, _ op: TierOp, _ key: TierKey, bytes: Int = 0,
                          _ start: (@escaping (Result<T, TierError>) -> Void) -> Void,
                          _ done: @escaping (Result<T, TierError>) -> Void) {
        timedMany(tier, role, op, [key], bytes: bytes, { finish in start { finish([$0]) } }) { done($0[0]) }
    }
}
