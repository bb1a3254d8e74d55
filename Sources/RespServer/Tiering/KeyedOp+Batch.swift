import Synchronization
import Tiers

/// Writes of one key that wait on its lock, from clients of one loop on its shared connection,
/// run as one transaction when the lock comes: `MULTI; EXISTS k; cmd1; …; cmdN; PTTL|DUMP k; EXEC`.
/// Fifty clients writing one hash then cost hot one transaction per loop pass, and the lower
/// tiers one state (or one key-log mark), instead of fifty of each, one round trip apart.
///
/// What holds as for each command alone (`KeyedOp`, `KeyedOp+Fold`):
/// - Order: the batch is one holder of the key's lock, so the states below follow hot's order.
///   A client's commands in a batch are consecutive requests of its pipeline, in its order: a
///   member and its `followers` (its later requests wait until the member answers for them
///   all: `KeyedOp.follow`), and a batch stops taking commands once it holds the lock, so each
///   client's order holds.
/// - Each member's commands are sent on its own client's route, one member after another in one
///   loop pass on the shared connection (so nothing else comes between them), and each reply is
///   the element of EXEC's array in its place; the `+QUEUED` of the member's last command holds
///   the place of all their replies among its client's replies, which go out together.
/// - Hot lost the key (`EXISTS` said 0) while a lower tier holds it: the commands ran on nothing;
///   the batch runs again as `MULTI; EXISTS k; DEL k; RESTORE k …; cmd1; …; EXEC`, each client
///   getting the second run's reply. Should the lookup fail, what they made is deleted and each
///   gets the error.
/// - Anything else (a command hot would not queue, so EXEC aborts; EXEC failing; the second run
///   failing): each command then runs alone, in the batch's order, the key still held, exactly
///   as it would have without the batch (after the second run's result was deleted).
/// Only commands of one key in the connection's db that would fold their bring-up are batched
/// (`batchKey`): no scripts, no WATCHing or tracking clients, no rule's default expiry.
final class KeyBatch {
    let key: TierKey
    let capture: KeyCapture
    /// In the order they reached the key's lock; the first leads (it waits on the lock).
    private(set) var members: [KeyedOp]
    /// Each member's place among its client's replies (its command's `+QUEUED`).
    private var slots: [ReplySlot?] = []
    /// Commands that could not go on the shared connection: each runs alone after the batch.
    private var apart: [KeyedOp] = []
    /// Commands joined as members' followers (`KeyedOp.follow`).
    private var followerCount = 0
    /// Commands in the transaction, the members' and their followers'.
    private var commandCount: Int { members.count + followerCount }
    private var readBack = false
    private var probed = false
    /// Until the key's lock comes: later commands of the key may still join.
    private(set) var isOpen = true
    /// Bounds one transaction (and how long hot runs it): a full batch takes no more members,
    /// the next command of the key leads a new one.
    static let maxMembers = 1024

    /// The leader's loop's (every member is of that loop). Kept apart from `members`, which may
    /// be left empty when every client has left the shared route (closed, say) before the lock came.
    private let access: TierAccess

    init(leader: KeyedOp, key: TierKey) {
        self.key = key
        capture = leader.plan.capture
        members = [leader]
        access = leader.access
    }

    fileprivate func add(_ op: KeyedOp) { members.append(op) }

    /// Whether a member may take one more follower. Only this batch's loop adds followers or
    /// members, so the count is read without the lock `KeyBatches` holds for other loops.
    var hasRoom: Bool { isOpen && commandCount < KeyBatch.maxMembers }

    /// A member took a follower.
    func followed() { followerCount += 1 }

    private var core: TieringCore { access.core }

    /// The key's lock is the batch's: no more members; run them.
    func granted() {
        core.batches.close(self)
        isOpen = false
        if commandCount == 1 { members[0].bringUp(); return }
        for m in members { m.lockKeys = [] }
        apart = members.filter { !$0.session.onSharedRoute }.flatMap { $0.unfollowed() }
        members = members.filter { $0.session.onSharedRoute }
        followerCount = members.reduce(0) { $0 + $1.followers.count }
        slots = Array(repeating: nil, count: members.count)
        guard commandCount > 1 else {
            let alone = members + apart
            apart = []
            runAlone(alone, from: 0)
            return
        }
        let split = core.collections.split([key], capture: capture, hasKeyLog: core.keyLog != nil)
        readBack = !split.captured.isEmpty
        probed = !split.deferred.isEmpty
        send(restoring: nil)
    }

    // MARK: - The transaction

    private func send(restoring found: Found?) {
        let leader = members[0].session
        var head: [[[UInt8]]] = [[Array("MULTI".utf8)], [Array("EXISTS".utf8), key.bytes]]
        if let found { head += [[Array("DEL".utf8), key.bytes], Promotion.setCommand(key, found.entry)] }
        var tail: [[[UInt8]]] = readBack ? capture.commands(key.bytes) : []
        if probed { tail.append([Array("PTTL".utf8), key.bytes]) }
        tail.append([Array("EXEC".utf8)])
        var queued = true
        leader.sendComposed(head) { replies, slot in
            leader.fill(slot, [])
            if replies.dropFirst().contains(where: { !KeyBatch.isQueued($0) }) { queued = false }
        }
        for (i, m) in members.enumerated() {
            m.session.sendComposed(encoded: m.requests, count: 1 + m.followers.count) { [self] replies, slot in
                if slots[i] == nil { slots[i] = slot } else { m.session.fill(slot, []) }
                if replies.contains(where: { !KeyBatch.isQueued($0) }) { queued = false }
            }
        }
        leader.sendComposed(tail) { [self] replies, slot in
            leader.fill(slot, [])
            let ranAll = queued && !replies.dropLast().contains(where: { !KeyBatch.isQueued($0) })
            execReplied(ranAll ? replies[replies.count - 1] : nil, head: head.count - 1, tail: tail.count - 1,
                        restoring: found)
        }
    }

    static let queuedReply = Array("+QUEUED\r\n".utf8)

    private static func isQueued(_ reply: [UInt8]) -> Bool { reply == queuedReply }

    /// `exec`: EXEC's reply if hot queued everything. `head` and `tail`: the proxy's elements
    /// before and after the commands'.
    private func execReplied(_ exec: [UInt8]?, head: Int, tail: Int, restoring found: Found?) {
        guard let exec, let elements = ReplyParts.elements(exec), elements.count == head + commandCount + tail else {
            if found != nil { undo { [self] in runEachAlone() } } else { runEachAlone() }
            return
        }
        if found == nil, ReplyParts.integer(elements[0]) == 0, !access.isKnownAbsentBelow(key) {
            access.lookup(key, locked: true) { [self] result in
                switch result {
                case .success(nil): ran(elements, head: head, restoring: nil)
                case .success(let found?): send(restoring: found)
                case .failure(let e): undo { [self] in answer(ReplyParts.errorReply("ERR tierproxy: \(e)")) }
                }
            }
            return
        }
        ran(elements, head: head, restoring: found)
    }

    /// The transaction ran: its captures go below, then each client gets its command's reply.
    private func ran(_ elements: [ArraySlice<UInt8>], head: Int, restoring found: Found?) {
        let replies = Array(elements[head..<(head + commandCount)])
        let promoted = { [self] (then: @escaping () -> Void) in
            guard let found else { then(); return }
            core.stats.promotions.add(1)
            access.metrics.promoted(found.tier)
            access.copyUp(key, found, then)
        }
        // An error changes nothing: if every command failed, nothing goes below.
        guard replies.contains(where: { !ReplyParts.isError($0) }) else {
            promoted { [self] in answer(replies) }
            return
        }
        let now = wallClockMillis()
        var states: [(TierKey, KeyState)] = []
        var present: [(TierKey, Int64?)] = []
        var at = head + commandCount
        if readBack, let state = capture.state(elements[at], elements[at + 1], now: now) {
            if capture == .dump, case .value(let v, _, _) = state { core.collections.noteSize(key, bytes: v.count) }
            states.append((key, state))
            at += 2
        } else if readBack {
            at += 2
        }
        if probed {
            let expiry: Int64?? = ReplyParts.integer(elements[at]) == nil ? .some(nil) : KeyCapture.expiry(elements[at], now: now)
            if let expiry { present.append((key, expiry)) } else { states.append((key, .absent)) }
        }
        core.generations.bump(key)
        let session = members[0].session
        promoted { [self] in
            KeyedOp.syncBelow(states, present: present, writes: commandCount, session: session, access: access) { [self] failed in
                answer(failed.map { e in replies.map { _ in e[...] } } ?? replies)
            }
        }
    }

    // MARK: - Endings

    /// What the first run made of nothing goes (hot lacked the key before it).
    private func undo(_ then: @escaping () -> Void) {
        members[0].session.sendComposed([[Array("DEL".utf8), key.bytes]]) { [self] _, slot in
            members[0].session.fill(slot, [])
            then()
        }
    }

    private func answer(_ reply: [UInt8]) { answer(Array(repeating: reply[...], count: commandCount)) }

    /// Each client gets its replies (one per command, in the batch's order) in their place; the
    /// key goes to its next holder.
    private func answer(_ replies: [ArraySlice<UInt8>]) {
        let next = apart
        apart = []
        if next.isEmpty { releaseKey() }
        var at = 0
        for (i, m) in members.enumerated() {
            let n = 1 + m.followers.count
            var reply = Array(replies[at])
            for r in replies[(at + 1)..<(at + n)] { reply += r }
            at += n
            m.finish(slots[i] ?? ReplySlot(), reply)
        }
        if !next.isEmpty { runAlone(next, from: 0) }
    }

    /// Every command runs alone, members and followers, in the batch's order.
    private func runEachAlone() { runAlone(members.flatMap { $0.unfollowed() }, from: 0) }

    /// `ops[index...]` run one at a time as if never batched, the key still held for them.
    private func runAlone(_ ops: [KeyedOp], from index: Int) {
        guard index < ops.count else { releaseKey(); return }
        let op = ops[index]
        if let i = members.firstIndex(where: { $0 === op }), let slot = slots[i] {
            slots[i] = nil
            op.session.fill(slot, [])
        }
        op.afterFinish = { [self] in runAlone(ops, from: index + 1) }
        op.bringUp()
    }

    private func releaseKey() {
        // Bumped again at the end: a lookup that began while the lower tiers held the old state
        // must not promote it once the key is free.
        core.generations.bump(key)
        core.locks.release([key])
    }
}

/// The batches still gathering commands (each waits for its key's lock), one per key.
final class KeyBatches: @unchecked Sendable {
    enum Joined {
        /// The command waits in an open batch of the loop.
        case joined(KeyBatch)
        /// The command leads a new batch: it takes the key's lock for it.
        case leads(KeyBatch)
        /// Another loop's batch (or one of another capture) gathers for the key: it goes alone.
        case apart
    }

    private let open = Mutex<[TierKey: (loop: ObjectIdentifier, batch: KeyBatch)]>([:])

    func join(_ op: KeyedOp, key: TierKey) -> Joined {
        let loop = ObjectIdentifier(op.access.loop)
        return open.withLock { open in
            guard let (owner, batch) = open[key], batch.members.count < KeyBatch.maxMembers else {
                // A full batch still waits for the lock: the new one takes it after it (FIFO).
                let batch = KeyBatch(leader: op, key: key)
                open[key] = (loop, batch)
                return .leads(batch)
            }
            guard owner == loop, batch.capture == op.plan.capture else { return .apart }
            batch.add(op)
            return .joined(batch)
        }
    }

    /// `batch` holds its key now: later commands of the key gather in a new one.
    func close(_ batch: KeyBatch) {
        open.withLock { open in
            if open[batch.key]?.batch === batch { open[batch.key] = nil }
        }
    }
}
