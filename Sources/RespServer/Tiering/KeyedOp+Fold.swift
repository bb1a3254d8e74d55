import Tiers

/// The folded bring-up: a command of one key, not known to be absent below, runs at once as
/// `MULTI; EXISTS k; command; captures; EXEC` instead of asking `EXISTS k` first and running the
/// transaction a round trip later: one round trip per command instead of two. The key's lock is
/// held throughout, so no other tiered command of the key runs meanwhile. The client's later
/// requests follow at once if they take key locks too (keyed and blocking commands: a pipeline
/// of them is not serialised by round trips); any other (a `GET`, which takes no lock, among
/// them) waits for every earlier reply while a folded command is in doubt
/// (`TieredClient.foldsInDoubt`), so it cannot see what a command made of nothing.
///
/// Hot almost always holds the key (or it is new): `EXISTS` says 1, or 0 and nothing below holds
/// it, and the transaction's reply stands. When hot had lost a key that a lower tier still holds,
/// the command ran on nothing: the copy below is looked up, and the transaction runs again as
/// `MULTI; DEL k; RESTORE k …; command; captures; EXEC` (what the command made of nothing is
/// replaced by the copy, then the command runs on it). The client gets the second run's reply in
/// its own place among its replies. Should the lookup fail, the first run's result is deleted
/// (hot lacked the key before it) and the client gets the error, as an unfolded bring-up answers.
///
/// Not folded: commands of several keys, of another database, scripts (a second run would repeat
/// their other effects), commands that cannot run in a transaction, a client that watches keys
/// or keeps client tracking on, and writes whose rule gives a default expiry only to a key they
/// create (that needs to know beforehand).
extension KeyedOp {
    func beginDoubt() {
        guard !inDoubt else { return }
        inDoubt = true
        session.foldsInDoubt += 1
    }

    func endDoubt() {
        guard inDoubt else { return }
        inDoubt = false
        session.foldsInDoubt -= 1
    }

    func foldable(_ keys: [TierKey]) -> TierKey? {
        guard keys.count == 1, let k = keys.first, k.db == db, bringUpAttempts == 0, !own.beside, !plan.promotesApart,
              !plan.runsAlone, !plan.script, session.watchedKeys.isEmpty else { return nil }
        let written = unique(plan.written.map(tierKey))
        guard !written.isEmpty, written.allSatisfy({ $0 == k }), plan.bringUp.map(tierKey).allSatisfy({ $0 == k }) else { return nil }
        if plan.defaultTTL == .ifCreated && core.rules.rule(for: k.bytes).ttlSeconds != nil { return nil }
        return k
    }

    /// The key this command may share a transaction with other clients' writes of it
    /// (`KeyBatch`): one that would fold its bring-up, sent on the loop's shared connection,
    /// with no default expiry to give.
    func batchKey() -> TierKey? {
        guard let k = lockKeys.first, lockKeys.allSatisfy({ $0 == k }), k.db == db, session.onSharedRoute, !own.beside,
              !plan.promotesApart, !plan.runsAlone, !plan.script, session.watchedKeys.isEmpty,
              plan.defaultTTL == .never || core.rules.rule(for: k.bytes).ttlSeconds == nil,
              !plan.written.isEmpty, plan.written.allSatisfy({ tierKey($0) == k }),
              plan.bringUp.allSatisfy({ tierKey($0) == k }) else { return nil }
        return k
    }

    /// The command ran while hot lacked `key`, which is not known to be absent below.
    func ranWithoutKey(_ key: TierKey, _ capture: CaptureBatch, _ written: [TierKey], _ slot: ReplySlot,
                       otherwise: @escaping () -> Void) {
        access.lookup(key, locked: true) { [self] result in
            switch result {
            case .success(nil):
                endDoubt()
                otherwise()
            case .success(let found?):
                existed.insert(key)
                promotions = [(key, found)]
                let again = CaptureBatch(command: args, expiring: capture.expiring, written: captured, probed: deferred,
                                         capture: plan.capture, home: db, promotions: promotions, replacing: true)
                runTransaction(again, written, nil, answering: slot)
            case .failure(let e):
                session.sendComposed([[Array("DEL".utf8), key.bytes]]) { [self] _, undone in
                    endDoubt()
                    session.fill(undone, [])
                    finish(slot, ReplyParts.errorReply("ERR tierproxy: \(e)"))
                }
            }
        }
    }
}
