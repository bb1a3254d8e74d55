import Reactor
import Tiers

/// A blocking command (`TieredCommand.Route.blocking`: BLPOP, BLMOVE, BZPOPMIN, XREAD … BLOCK,
/// XREADGROUP … BLOCK …) whose keys may live below hot (docs/semantics.md §13):
///
/// 1. its keys' locks are taken, so no tiered write of them runs meanwhile;
/// 2. beside the client's connection, on the loop's own (the client's may be held up behind an
///    earlier command that blocks there): `EXISTS` of each key that may be below; the ones hot
///    lacks are looked up and promoted with their expiry, as every bring-up does;
/// 3. the command goes to hot as sent on the client's route, and only then do the locks go, so
///    a write that waited for them reaches hot after it (Redis serves blocked clients in the
///    order they blocked). The client's later requests are read again at once: a client that
///    leaves while blocked closes its upstream connection, and Redis forgets the command.
///
/// It returns at once if the key now holds data, else blocks until another client's write wakes
/// it; its reply is Redis's (WRONGTYPE, a timeout's nil). What a blocking write took is captured
/// once it answered (`BlockedWrite`). Keys known absent below are not asked about at all
/// (`fastPath`): a blocking command on a key that is nowhere costs what it costs direct.
final class BlockingRun {
    private let session: any TieredClient
    private let args: [[UInt8]]
    private let plan: TieredCommand.BlockingPlan
    private let access: TierAccess
    private let db: Int
    private let done: () -> Void
    private var locked: [TierKey] = []

    init(session: any TieredClient, args: [[UInt8]], plan: TieredCommand.BlockingPlan, access: TierAccess,
         done: @escaping () -> Void) {
        self.session = session
        self.args = args
        self.plan = plan
        self.access = access
        self.db = session.db
        self.done = done
    }

    private var core: TieringCore { access.core }

    /// True if nothing of `plan`'s keys can be below hot now, so the command may travel as it
    /// is, pipelined: no lower tier, no tiered key, or every one known absent below and free
    /// (a key another command holds may be on its way up or down: wait in line for it).
    static func fastPath(_ plan: TieredCommand.BlockingPlan, _ args: [[UInt8]], db: Int, access: TierAccess) -> Bool {
        let core = access.core
        let keys = KeyLocks.ordered(plan.bringUp.map { TierKey(db: db, args[$0.index]) }.filter(core.isTiered))
        guard access.hasLowerTiers, !keys.isEmpty else { return true }
        guard !core.swapping, core.locks.tryAcquire(keys) else { return false }
        defer { core.locks.release(keys) }
        return keys.allSatisfy(access.isKnownAbsentBelow)
    }

    func start() {
        locked = KeyLocks.ordered(plan.bringUp.map(tierKey).filter(core.isTiered))
        // A SWAPDB under way is let through first: these keys name databases it moves.
        core.whenNotSwapping(on: access.loop) { [self] in
            core.locks.acquire(locked, on: access.loop) { [self] in bringUp() }
        }
    }

    private func tierKey(_ k: TieredCommand.KeyArg) -> TierKey { TierKey(db: k.db ?? db, args[k.index]) }

    // MARK: - Bring up, beside the client's connection

    private var homeDB: Int { session.homeDB }

    private func bringUp() {
        let keys = locked.filter { !access.isKnownAbsentBelow($0) }
        if keys.isEmpty || session.isClosed { run(); return }
        var batch = DBBatch(home: homeDB)
        for k in keys { batch.add([Array("EXISTS".utf8), k.bytes], db: k.db) }
        session.hot.send(batch.finish()) { [self] replies in
            let answers = batch.ours(replies)
            // Hot could not say (it is down, or refuses the proxy): the command judges for itself.
            guard !answers.contains(where: ReplyParts.isError) else { run(); return }
            let missing = zip(keys, answers).filter { ReplyParts.integer($0.1) != 1 }.map { $0.0 }
            if missing.isEmpty { run(); return }
            lookUp(missing)
        }
    }

    private func lookUp(_ keys: [TierKey]) {
        var found: [(TierKey, Found)] = []
        var failure: TierError?
        var remaining = keys.count
        for k in keys {
            access.lookup(k) { [self] result in
                switch result {
                case .failure(let e): failure = failure ?? e
                case .success(let f?): found.append((k, f))
                case .success(nil): break
                }
                remaining -= 1
                guard remaining == 0 else { return }
                if let failure { answer(ReplyParts.errorReply("ERR tierproxy: \(failure)")); return }
                promote(found)
            }
        }
    }

    private func promote(_ found: [(TierKey, Found)]) {
        if found.isEmpty { run(); return }
        var batch = DBBatch(home: homeDB)
        for (k, f) in found { batch.add(Promotion.setCommand(k, f.entry), db: k.db) }
        session.hot.send(batch.finish()) { [self] replies in
            let answers = batch.ours(replies)
            if let refused = answers.first(where: Promotion.refused) {
                // OOM, say: what Redis says to a write it cannot take, rather than a wait.
                answer(Array(refused))
                return
            }
            access.promoted(found) { [self] in run() }
        }
    }

    // MARK: - Run on hot

    /// Sends the command as sent, on the client's route, then gives back the locks.
    private func run() {
        let written = plan.written.map(tierKey)
        let mark = BlockingMark(plan.deletes.map(tierKey), core: core)
        session.sendComposed([args]) { [session, access] replies, slot in
            let reply = replies[0]
            guard !written.isEmpty else { mark?.release(); session.fill(slot, reply); return }
            BlockedWrite.answered(written, reply: reply, session: session, access: access) {
                // Before the reply: a client that saw it may look the keys up at once, from any loop.
                mark?.release()
                session.fill(slot, reply)
            }
        }
        finish()
    }

    /// The command does not run: `reply` takes its place among the client's replies.
    private func answer(_ reply: [UInt8]) {
        session.sendComposed([[Array("PING".utf8)]]) { [session] _, slot in session.fill(slot, reply) }
        finish()
    }

    private func finish() {
        core.locks.release(locked)
        locked = []
        done()
    }
}
