import Tiers

/// The bring-up's lookups below and promotions (`KeyedOp` step 2): copies found below are put in
/// hot before the command runs, apart or inside its transaction (`watchingBringUp`).
extension KeyedOp {
    func lookUp(_ keys: [TierKey], _ slot: ReplySlot) {
        var results = [Result<Found?, TierError>?](repeating: nil, count: keys.count)
        var remaining = keys.count
        for (i, k) in keys.enumerated() {
            access.lookup(k, locked: true) { [self] result in
                results[i] = result
                remaining -= 1
                if remaining == 0 { promote(zip(keys, results.map { $0! }), slot) }
            }
        }
    }

    func promote<S: Sequence>(_ results: S, _ slot: ReplySlot) where S.Element == (TierKey, Result<Found?, TierError>) {
        var found: [(TierKey, Found)] = []
        for (k, r) in results {
            switch r {
            case .failure(let e):
                unwatch { [self] in finish(slot, ReplyParts.errorReply("ERR tierproxy: \(e)")) }
                return
            case .success(let f?):
                found.append((k, f))
                existed.insert(k)
            case .success(nil):
                break
            }
        }
        if found.isEmpty { session.fill(slot, []); execute(); return }
        if watchingBringUp || readsAfterItsPromotions {
            // Promoted inside the command's transaction (`CaptureBatch`), counted once it ran.
            promotions = found
            session.fill(slot, [])
            execute()
            return
        }
        var batch = DBBatch(home: own.homeDB)
        for (k, f) in found { batch.add(Promotion.setCommand(k, f.entry), db: k.db) }
        own.send(batch.finish()) { [self] replies, promoted in
            session.fill(slot, [])
            if let error = batch.ours(replies).first(where: Promotion.refused) {
                finish(promoted, Array(error))     // e.g. OOM: what Redis says to a write it cannot take
                return
            }
            core.stats.promotions.add(found.count)
            for (_, f) in found { access.metrics.promoted(f.tier) }
            var pending = found.count
            for (k, f) in found {
                access.copyUp(k, f) { [self] in
                    pending -= 1
                    if pending == 0 { session.fill(promoted, []); execute() }
                }
            }
        }
    }

    /// A command that only reads runs in one transaction with its promotions when it may run in
    /// one: under maxmemory Redis makes room before each command, so a read sent after its
    /// promotion could find the copy just taken already evicted (it may be all hot holds, or the
    /// key sampled), and answer as if the key were nowhere.
    var readsAfterItsPromotions: Bool {
        plan.written.isEmpty && !own.beside && !plan.promotesApart && !plan.runsAlone && !plan.script
    }

    /// Ends `watchingBringUp` when no EXEC will (the command does not run as planned).
    func unwatch(_ then: @escaping () -> Void) {
        guard watchingBringUp else { then(); return }
        watchingBringUp = false
        session.sendComposed([[Array("UNWATCH".utf8)]]) { [self] _, slot in
            session.fill(slot, [])
            then()
        }
    }

    /// After the transaction promoted them: counted, and a copy found in cold copied to warm.
    func promoted(_ then: @escaping () -> Void) {
        let found = promotions
        promotions = []
        if found.isEmpty { then(); return }
        core.stats.promotions.add(found.count)
        for (_, f) in found { access.metrics.promoted(f.tier) }
        var pending = found.count
        for (k, f) in found {
            access.copyUp(k, f) {
                pending -= 1
                if pending == 0 { then() }
            }
        }
    }

    /// The promotions alone, then `then`: when the transaction that was to carry them did not run.
    func promoteApart(_ slot: ReplySlot, then: @escaping () -> Void) {
        var batch = DBBatch(home: db)
        for (k, f) in promotions { batch.add(Promotion.setCommand(k, f.entry), db: k.db) }
        session.sendComposed(batch.finish()) { [self] replies, promotedSlot in
            session.fill(slot, [])
            if let error = batch.ours(replies).first(where: Promotion.refused) {
                promotions = []
                finish(promotedSlot, Array(error))     // e.g. OOM: what Redis says to a write it cannot take
                return
            }
            promoted { [self] in
                session.fill(promotedSlot, [])
                then()
            }
        }
    }
}
