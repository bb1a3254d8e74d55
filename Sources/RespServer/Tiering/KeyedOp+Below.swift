import Tiers

/// The written keys' states go below (write-through: before the reply; write-behind: recorded
/// durably first), and a lower tier that does not take one leaves the key nowhere.
extension KeyedOp {
    /// The captured keys' states, and a delete for each probed key the command left absent
    /// (`presentDeferred` gets the others).
    func states(_ capture: CaptureBatch, _ elements: [ArraySlice<UInt8>]) -> [(TierKey, KeyState)] {
        var out = capture.states(elements, of: captured)
        if plan.capture == .dump {
            for (k, state) in out { if case .value(let v, _, _) = state { core.collections.noteSize(k, bytes: v.count) } }
        }
        presentDeferred = []
        for (k, expiry) in zip(deferred, capture.probedExpiries(elements)) {
            if let expiry { presentDeferred.append((k, expiry)) } else { out.append((k, .absent)) }
        }
        return out
    }

    func sync(_ states: [(TierKey, KeyState)], reply: [UInt8], slot: ReplySlot) {
        let present = presentDeferred
        presentDeferred = []
        KeyedOp.syncBelow(states, present: present, session: session, access: access) { [self] failed in
            finish(slot, failed ?? reply)
        }
    }

    /// Records the `present` deferred keys, then copies `states` below; `then` gets nil once every
    /// lower tier took them, or the error the client gets when one did not (`removeEverywhere`).
    /// `writes`: how many commands the deferred keys' marks stand for (a `KeyBatch` runs several).
    static func syncBelow(_ states: [(TierKey, KeyState)], present: [(TierKey, Int64?)], writes: Int? = nil,
                          session: any TieredClient, access: TierAccess, then: @escaping ([UInt8]?) -> Void) {
        let below = { applyBelow(states, session: session, access: access, then: then) }
        if present.isEmpty { below(); return }
        DeferredWrite.record(present, writes: writes, access: access, then: below)
    }

    private static func applyBelow(_ states: [(TierKey, KeyState)], session: any TieredClient, access: TierAccess,
                                   then: @escaping ([UInt8]?) -> Void) {
        if states.isEmpty { then(nil); return }
        var remaining = states.count
        var failedWrites: [(TierKey, TierError)] = []
        for (key, state) in states {
            LowerWrite.apply(key, state, access: access) { result in
                if case .failure(let e) = result { failedWrites.append((key, e)) }
                remaining -= 1
                if remaining == 0 { synced(failedWrites, session: session, access: access, then: then) }
            }
        }
    }

    /// A write a lower tier did not take must not leave an older value readable there: the key
    /// is removed from hot too and its delete recorded durably (retried until it lands; reads
    /// see it absent meanwhile). The client gets an error: its write may not have happened.
    private static func synced(_ failures: [(TierKey, TierError)], session: any TieredClient, access: TierAccess,
                               then: @escaping ([UInt8]?) -> Void) {
        guard let (_, error) = failures.first else { then(nil); return }
        LowerWrite.removeEverywhere(failures.map { $0.0 }, access: access, hot: session.hot,
                                    homeDB: session.homeDB) {
            then(ReplyParts.errorReply("ERR tierproxy: the lower tier did not take the write, "
                                       + "so the key was removed from every tier: \(error)"))
        }
    }
}
