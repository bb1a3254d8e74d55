import Tiers

/// A blocking write (`TieredCommand.Route.blocking`: BLPOP, BLMOVE, BZPOPMIN, XREADGROUP …)
/// runs on hot as sent, without key locks, since it may wait for another client's write. Once it
/// answered with something it took, its keys are locked, their state read on the loop's own
/// connection (`DUMP`, `PTTL`) and copied below per their rules, and only then is the reply
/// passed on: what is below is never older than what the client was told (a popped element
/// cannot come back from below). A key hot loses between the reply and that read is taken as
/// deleted (docs/semantics.md §13).
enum BlockedWrite {
    static func answered(_ keys: [TierKey], reply: [UInt8], session: any TieredClient, access: TierAccess,
                         then answer: @escaping () -> Void) {
        let core = access.core
        let tiered = KeyLocks.ordered(keys.filter(core.isTiered))
        // An error or a timeout (null) took nothing.
        guard !tiered.isEmpty, !ReplyParts.isError(reply), !ReplyParts.isNull(reply) else { answer(); return }
        let hot: HotClient = session.hot, homeDB = session.homeDB
        core.locks.acquire(tiered, on: access.loop) {
            let capture = CaptureBatch(command: nil, expiring: [], written: tiered, capture: .dump, home: homeDB)
            hot.send(capture.commands) { captured in
                for k in tiered { core.generations.bump(k) }
                func done() {
                    for k in tiered { core.generations.bump(k) }
                    core.locks.release(tiered)
                    answer()
                }
                guard let elements = capture.elements(captured) else {
                    // Hot could not say: the flusher reads it again later.
                    TransactionSync.record(tiered, ran: true, access: access, then: done)
                    return
                }
                let states = capture.states(elements, of: tiered)
                var remaining = states.count
                var failed: [TierKey] = []
                if remaining == 0 { done(); return }
                for (key, state) in states {
                    LowerWrite.apply(key, state, access: access) { result in
                        if case .failure = result { failed.append(key) }
                        remaining -= 1
                        guard remaining == 0 else { return }
                        // The command ran, so its reply stands; a state that could not go below
                        // must not leave an older copy there to come back.
                        if failed.isEmpty { done(); return }
                        LowerWrite.removeEverywhere(failed, access: access, hot: hot, homeDB: homeDB, done)
                    }
                }
            }
        }
    }
}

/// The keys a blocking command may delete (a pop of the last element), marked from before it is
/// sent until what it did is below (`release()`, before its reply goes out), or until it is
/// dropped unanswered (its client left: `deinit`). Not left to `deinit` when it answers: the
/// closures that hold the mark may outlive the reply (a tier's worker thread drops its batch's
/// closures only after handing the completions to the loop), and a lookup from a client that
/// has seen the reply must not find the key still marked and answer it absent. While
/// marked, a lookup of such a key finds nothing below (`TierAccess.lookup`): hot lacking it may
/// mean the pop emptied it, and the copy below is then older, so bringing it up would hand the
/// popped element out twice. A key hot evicted meanwhile is not brought up either; only a list
/// or sorted set without elements keeps a client blocked, so that is a narrow race.
final class BlockingMark {
    private let keys: [TierKey]
    private let core: TieringCore
    /// Released already; only the loop that sent the command releases it, and `deinit` runs after.
    private var released = false

    init?(_ keys: [TierKey], core: TieringCore) {
        let tiered = keys.filter(core.isTiered)
        guard !tiered.isEmpty else { return nil }
        self.keys = tiered
        self.core = core
        core.markBlockingDeletes(tiered)
    }

    /// What the command did is below (or it took nothing): lookups may read the keys again.
    func release() {
        guard !released else { return }
        released = true
        core.unmarkBlockingDeletes(keys)
    }

    deinit { release() }
}
