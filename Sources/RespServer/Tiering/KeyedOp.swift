import RESP
import Reactor
import Tiers

/// One tiered command other than GET/MGET, run while the client's later requests wait (so every
/// reply stays in order and the client's db is settled):
///
/// 1. take the keys' locks (shared by every loop), so no other tiered command of these keys
///    runs in between;
/// 2. bring up: `EXISTS` each key the command reads, on the client's own route (Redis judges
///    NOAUTH/ACL as usual; on any error the command just passes through); keys hot lacks are
///    looked up below and promoted with their expiry;
/// 3. run it on hot. A writing command runs as `MULTI; cmd; GET|DUMP k; PTTL k …; EXEC`, so the
///    state each written key has right after the command is captured with it, atomically: a
///    key evicted a moment later is not mistaken for a delete. The brought-up keys are WATCHed
///    from before their EXISTS and the promotions go inside that MULTI, before the command
///    (`watchingBringUp`), so hot losing a key in between cannot make the command see it
///    missing. The client gets the command's element.
///    For a client with CLIENT TRACKING on, the bring-up and the capture run beside its
///    connection instead, and only the command itself on it (`OwnRequests`);
/// 4. copy each written key's state below, as its rule says (write-through: before the reply;
///    write-behind: recorded durably first), then release the keys and answer.
final class KeyedOp {
    let session: any TieredClient
    let args: [[UInt8]]
    let plan: TieredCommand.KeyedPlan
    let access: TierAccess
    let db: Int
    /// The keys this command holds; empty while a `KeyBatch` holds them for it.
    var lockKeys: [TierKey] = []
    /// Keys the command wrote in hot: their generation moves again when the locks go.
    private var writtenKeys: [TierKey] = []
    /// Keys that existed (in hot or below) before the command: decides `ttl` for creators.
    var existed: Set<TierKey> = []
    /// Written keys read back after the command, and large collections only probed
    /// (`CollectionCapture`): those found present are recorded for the flusher to read.
    var captured: [TierKey] = []
    var deferred: [TierKey] = []
    var presentDeferred: [(TierKey, Int64?)] = []
    /// Copies found below, promoted inside the command's transaction (`watchingBringUp`).
    var promotions: [(TierKey, Found)] = []
    /// The brought-up keys are WATCHed from before their EXISTS until the transaction's EXEC: if
    /// hot loses one in between, EXEC comes back null and bring-up runs again (bounded). Only on
    /// the client's own route, when the client watches nothing itself (its watches are
    /// `WatchGuard`'s) and the command will run as a transaction.
    var watchingBringUp = false
    var bringUpAttempts = 0
    /// The one key whose bring-up rides in the command's own transaction (`KeyedOp+Fold`).
    var folded: TierKey?
    /// This command counts in the session's `foldsInDoubt`.
    var inDoubt = false
    private let done: () -> Void
    /// Runs once this command has answered: the next of a failed batch's commands (`KeyBatch`).
    var afterFinish: (() -> Void)?
    /// The batch this command waits in, while it still takes members (`follow`).
    var gathering: KeyBatch? { batch.flatMap { $0.isOpen ? $0 : nil } }
    private weak var batch: KeyBatch?
    /// The client's next writes of the key, in its order, joined to this command's batch right
    /// after it (`follow`): records, not commands of their own, unless the batch cannot run them.
    var followers: [Follower] = []
    /// The last follower's plan, if the client's next request of the same command may reuse it.
    var repeated: RepeatedPlan?
    /// Where the bring-up and the capture go.
    let own: OwnRequests
    /// Called once the command itself is on its way to hot: the client's later requests may
    /// follow it from then on (they reach hot after it, on the same connection).
    private var sent: (() -> Void)?

    init(session: any TieredClient, args: [[UInt8]], plan: TieredCommand.KeyedPlan, access: TierAccess,
         sent: (() -> Void)? = nil, done: @escaping () -> Void) {
        self.session = session
        self.args = args
        self.plan = plan
        self.access = access
        self.db = session.db
        self.own = OwnRequests(session: session)
        self.sent = sent
        self.done = done
    }

    /// Sends the command (or its transaction) on the client's route. Later requests may follow
    /// it at once, unless the transaction may have to run again (`watchingBringUp`).
    private func sendCommand(_ commands: [[[UInt8]]], _ then: @escaping (_ replies: [[UInt8]], _ slot: ReplySlot) -> Void) {
        session.sendComposed(commands, then)
        if folded != nil { beginDoubt() } else { endDoubt() }
        if !watchingBringUp { fireSent() }
    }

    func fireSent() {
        let s = sent
        sent = nil
        s?()
    }

    var core: TieringCore { access.core }

    func tierKey(_ k: TieredCommand.KeyArg) -> TierKey { TierKey(db: k.db ?? db, args[k.index]) }

    func start() {
        lockKeys = (plan.bringUp + plan.written).map(tierKey).filter(core.isTiered)
        let needsDefaultTTL = plan.defaultTTL != .never && plan.written.contains { core.rules.rule(for: args[$0.index]).ttlSeconds != nil }
        guard access.hasLowerTiers, !lockKeys.isEmpty || needsDefaultTTL else { passThrough(); return }
        if let key = batchKey() {
            switch core.batches.join(self, key: key) {
            case .joined(let batch):
                lockKeys = []      // its batch's leader takes the key for it
                self.batch = batch
                learnPlan(CommandName(args[0]), args, plan)
                return
            case .leads(let batch):
                self.batch = batch
                learnPlan(CommandName(args[0]), args, plan)
                core.whenNotSwapping(on: access.loop) { [self] in
                    core.locks.acquire(lockKeys, on: access.loop) { batch.granted() }
                }
                return
            case .apart:
                break
            }
        }
        // A SWAPDB under way is let through first: this command's keys name databases it moves.
        core.whenNotSwapping(on: access.loop) { [self] in
            core.locks.acquire(lockKeys, on: access.loop) { [self] in bringUp() }
        }
    }

    /// `other` answers after this command now: the client's later requests wait for it instead.
    func handSent(to other: KeyedOp) {
        other.sent = sent
        sent = nil
    }

    // MARK: - Bring up

    func bringUp() {
        watchingBringUp = false
        let keys = unique(plan.bringUp.map(tierKey).filter(core.isTiered)).filter(mayNeedBringingUp)
        if keys.isEmpty { execute(); return }
        if let k = foldable(keys) {
            folded = k
            execute()
            return
        }
        watchingBringUp = bringUpAttempts < 8 && !own.beside && !plan.promotesApart && !plan.runsAlone
            && session.watchedKeys.isEmpty && plan.written.contains { core.isTiered(tierKey($0)) }
        var batch = DBBatch(home: own.homeDB)
        if watchingBringUp { for k in keys { batch.add([Array("WATCH".utf8), k.bytes], db: k.db) } }
        for k in keys { batch.add([Array("EXISTS".utf8), k.bytes], db: k.db) }
        own.send(batch.finish()) { [self] replies, slot in
            let answers = batch.ours(replies)
            guard !answers.contains(where: ReplyParts.isError), !session.isClosed else {
                session.fill(slot, [])
                unwatch { [self] in
                    release()
                    passThrough()
                }
                return
            }
            var missing: [TierKey] = []
            for (k, r) in zip(keys, answers.suffix(keys.count)) {
                if ReplyParts.integer(r) == 1 { existed.insert(k) } else { missing.append(k) }
            }
            if missing.isEmpty { session.fill(slot, []); execute(); return }
            lookUp(missing, slot)
        }
    }

    /// A key nothing below can hold is not asked about (hot's answer would change nothing),
    /// unless whether it existed decides a rule's default expiry.
    private func mayNeedBringingUp(_ key: TierKey) -> Bool {
        if plan.defaultTTL == .ifCreated && core.rules.rule(for: key.bytes).ttlSeconds != nil { return true }
        return !access.isKnownAbsentBelow(key)
    }

    // MARK: - Run on hot

    func execute() {
        let allWritten = unique(plan.written.map(tierKey))
        let written = allWritten.filter(core.isTiered)
        let expiring = allWritten.compactMap { k in defaultTTL(for: k).map { (k, $0) } }
        if plan.runsAlone {
            runAlone(written)
            return
        }
        if written.isEmpty && expiring.isEmpty && !watchingBringUp && promotions.isEmpty {
            // It only reads, and found its keys in hot: they are free again before it runs.
            release()
            sendCommand([args]) { [self] replies, slot in finish(slot, replies[0]) }
            return
        }
        (captured, deferred) = core.collections.split(written, capture: plan.capture, hasKeyLog: core.keyLog != nil)
        if own.beside {
            runThenCapture(expiring, written)
            return
        }
        let capture = CaptureBatch(command: args, expiring: expiring, written: captured, probed: deferred, capture: plan.capture,
                                   home: db, promotions: promotions, existedBefore: folded)
        // The proxy's EXEC would clear the client's watches: a guard keeps them exact.
        if let watch = WatchGuard(session: session) {
            watch.arm { [self] in runTransaction(capture, written, watch) }
        } else {
            runTransaction(capture, written, nil)
        }
    }

    /// A command that cannot run inside MULTI (`KeyedPlan.runsAlone`): its keys are up, their
    /// locks go (it may block until another client writes them), and its written keys are
    /// recorded once it answered, so the flusher copies what hot holds then.
    private func runAlone(_ written: [TierKey]) {
        release()
        sendCommand([args]) { [self] replies, slot in
            let reply = replies[0]
            TransactionSync.record(written, ran: !ReplyParts.isError(reply), access: access) { [self] in finish(slot, reply) }
        }
    }

    /// The command alone on the client's connection, then, its keys still locked, their state
    /// read without a transaction (`CaptureBatch`): beside a tracking client, or on its own
    /// route when hot would not queue the transaction. Should that read fail, the keys are
    /// recorded in the key log and the flusher copies what hot holds.
    private func runThenCapture(_ expiring: [(TierKey, Int)], _ written: [TierKey]) {
        let capture = CaptureBatch(command: nil, expiring: expiring, written: captured, probed: deferred, capture: plan.capture,
                                   home: own.homeDB)
        sendCommand([args]) { [self] replies, slot in
            let reply = replies[0]
            if ReplyParts.isError(reply) && !plan.script { finish(slot, reply); return }
            own.send(capture.commands) { [self] captured, captureSlot in
                session.fill(captureSlot, [])
                syncCaptured(capture, captured, written, reply: reply, slot: slot)
            }
        }
    }

    /// The states a capture read without a transaction go below; should that read have failed,
    /// the keys are recorded in the key log and the flusher copies what hot holds.
    private func syncCaptured(_ capture: CaptureBatch, _ captured: [[UInt8]], _ written: [TierKey], reply: [UInt8],
                              slot: ReplySlot) {
        for k in written { core.generations.bump(k) }
        writtenKeys = written
        guard let elements = capture.elements(captured) else {
            TransactionSync.record(written, ran: true, access: access) { [self] in finish(slot, reply) }
            return
        }
        sync(states(capture, elements), reply: reply, slot: slot)
    }

    /// Hot would not run the command inside the transaction: the client's watches come back,
    /// the promotions go on their own, then `alone` runs the command as hot will take it.
    private func runApart(_ slot: ReplySlot, _ watch: WatchGuard?, _ alone: @escaping () -> Void) {
        let go = { [self] in
            if promotions.isEmpty { session.fill(slot, []); alone() } else { promoteApart(slot, then: alone) }
        }
        if let watch { watch.restore(go) } else { go() }
    }

    /// Hot lost a brought-up key after its EXISTS: nothing ran; bring the keys up again.
    private func bringUpAgain(_ slot: ReplySlot) {
        session.fill(slot, [])
        bringUpAttempts += 1
        existed = []
        promotions = []
        bringUp()
    }

    /// `answering`: the client's slot when this transaction runs again after its first run
    /// (`KeyedOp+Fold`), the client's later requests having followed that one.
    func runTransaction(_ capture: CaptureBatch, _ written: [TierKey], _ watch: WatchGuard?, answering: ReplySlot? = nil) {
        func restored(_ then: @escaping () -> Void) { if let watch { watch.restore(then) } else { then() } }
        let commands = capture.commands
        sendCommand(commands) { [self] replies, own in
            let slot = answering ?? own
            if answering != nil { session.fill(own, []) }
            // Whether the command met what it should have is known below; until then (and only
            // then) the client's unlocked requests wait (`KeyedOp+Fold`).
            let doubtful = inDoubt
            endDoubt()
            // A command refused while queueing (arity, NOAUTH, ACL) ran nowhere: its own error.
            let queued = replies[capture.commandIndex]
            if queued.starts(with: Array("-OOM ".utf8)) {
                // Over maxmemory Redis queues nothing, though it may run the command outside
                // MULTI (one that adds no data, a script flagged allow-oom): let it judge.
                runApart(slot, watch) { [self] in runThenCapture(capture.expiring, written) }
                return
            }
            // So did a promotion refused while queueing (OOM: what Redis says to a write it cannot take).
            if let refused = replies[1..<capture.commandIndex].first(where: { $0 != KeyBatch.queuedReply })
                ?? (queued != KeyBatch.queuedReply ? queued : nil) {
                promotions = []
                restored { self.finish(slot, refused) }
                return
            }
            if watch == nil, watchingBringUp, let exec = replies.last, ReplyParts.isNull(exec) {
                bringUpAgain(slot)
                return
            }
            fireSent()
            if let watch, let exec = replies.last, ReplyParts.isNull(exec) {
                // A key the client watches had changed: its transaction must fail, and this one
                // (not watched any more) runs again.
                watch.transactionAborted()
                session.fill(slot, [])
                runTransaction(capture, written, watch)
                return
            }
            guard let elements = capture.elements(replies) else {
                // EXEC itself failed (e.g. the user may not run GET/DUMP/PTTL): hot did not run the
                // command; let it run alone, untiered, so the client gets Redis's own answer.
                runApart(slot, watch) { [self] in
                    release()
                    passThrough()
                }
                return
            }
            if let k = folded, capture.existedFirst(elements) == false, !access.isKnownAbsentBelow(k) {
                folded = nil
                if doubtful { beginDoubt() }
                ranWithoutKey(k, capture, written, slot) { [self] in
                    fireSent()
                    ran(capture, elements, written, slot, restored)
                }
                return
            }
            folded = nil
            fireSent()
            ran(capture, elements, written, slot, restored)
        }
    }

    /// The transaction ran: its reply and captures go to the client and below.
    private func ran(_ capture: CaptureBatch, _ elements: [ArraySlice<UInt8>], _ written: [TierKey], _ slot: ReplySlot,
                     _ restored: (@escaping () -> Void) -> Void) {
        let reply = Array(elements[capture.commandIndex - 1])
        // An error means nothing changed, except from a script: it may have written first
        // (the promotions did land: copies of what is below, so nothing changed).
        if ReplyParts.isError(reply) && !plan.script { restored { [self] in promoted { self.finish(slot, reply) } }; return }
        let states = self.states(capture, elements)
        for k in written { core.generations.bump(k) }
        writtenKeys = written
        restored { [self] in promoted { self.sync(states, reply: reply, slot: slot) } }
    }

    private func defaultTTL(for key: TierKey) -> Int? {
        guard let ttl = core.rules.rule(for: key.bytes).ttlSeconds else { return nil }
        switch plan.defaultTTL {
        case .never: return nil
        case .always: return ttl
        case .ifCreated: return existed.contains(key) ? nil : ttl
        }
    }

    // MARK: - Endings

    func finish(_ slot: ReplySlot, _ reply: [UInt8]) {
        endDoubt()
        release()
        session.fill(slot, reply)
        let s = sent
        sent = nil
        s?()
        done()
        let next = afterFinish
        afterFinish = nil
        next?()
    }

    func release() {
        // Bumped again at the end: a lookup that began while the lower tiers still held the old
        // state must not promote it once the keys are free.
        for k in writtenKeys { core.generations.bump(k) }
        writtenKeys = []
        if !lockKeys.isEmpty { core.locks.release(lockKeys) }
        lockKeys = []
    }

    /// Hot answers the command alone (not tiered, or refused in a way Redis must judge).
    private func passThrough() {
        sendCommand([args]) { [self] replies, slot in finish(slot, replies[0]) }
    }

    func unique(_ keys: [TierKey]) -> [TierKey] {
        var seen = Set<TierKey>()
        return keys.filter { seen.insert($0).inserted }
    }
}
