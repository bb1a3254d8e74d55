import Reactor
import Tiers

/// SWAPDB through the proxy (docs/semantics.md "Databases"). Hot swaps two databases at once;
/// the lower tiers follow by swapping two entries of the `DatabaseMap`, not by moving entries.
/// For the two to agree, nothing may be on its way below while they swap: tiered commands wait
/// at the gate, the ones under way finish, and the write-behind backlog drains (within
/// `tier-timeout`, else the SWAPDB is refused and nothing changed). Like FLUSHDB it rearranges
/// whole databases, so it needs `tiers-allow-flush yes`.
enum SwapOp {
    static func run(_ args: [[UInt8]], session: any TieredClient, access: TierAccess, done: @escaping () -> Void) {
        let core = access.core
        guard core.allowFlush, let map = core.databases else {
            FlushOp.refuse(args, because: core.databases == nil
                           ? "SWAPDB needs the database map in dir, which could not be read"
                           : "SWAPDB swaps whole databases in every tier; set tiers-allow-flush yes to allow it",
                           session: session, done: done)
            return
        }
        guard let a = Int(String(decoding: args[1], as: UTF8.self)), let b = Int(String(decoding: args[2], as: UTF8.self)),
              a >= 0, b >= 0 else {
            passThrough(args, session: session, done: done)    // Redis's own error for the indexes
            return
        }
        guard core.beginSwap() else {
            answer(session, ReplyParts.errorReply("ERR tierproxy: another SWAPDB is under way"), done)
            return
        }
        let deadline = access.loop.nowMillis + Int64(core.tierTimeoutMillis)
        waitForQuiet(access, until: deadline) { quiet in
            guard quiet else {
                core.endSwap()
                answer(session, ReplyParts.errorReply("ERR tierproxy: SWAPDB refused: writes to the lower tiers did not "
                                                      + "finish within tier-timeout; nothing was swapped"), done)
                return
            }
            session.sendComposed([args]) { replies, slot in
                var reply = replies[0]
                if !ReplyParts.isError(reply) {
                    do {
                        try map.swap(a, b)
                    } catch {
                        Log.warning("SWAPDB \(a) \(b) ran on hot but the database map could not be saved: \(error)")
                        reply = ReplyParts.errorReply("ERR tierproxy: hot swapped databases \(a) and \(b) but the "
                                                      + "lower tiers could not follow: \(error)")
                    }
                    core.negative.removeAll()
                    core.absentBelow.reset()
                }
                core.endSwap()
                session.fill(slot, reply)
                done()
            }
        }
    }

    /// Polls until no key is locked and the write-behind backlog is empty, or `deadline` passes.
    private static func waitForQuiet(_ access: TierAccess, until deadline: Int64, _ then: @escaping (Bool) -> Void) {
        QuietPoll(access: access, deadline: deadline, then).check()
    }

    private static func passThrough(_ args: [[UInt8]], session: any TieredClient, done: @escaping () -> Void) {
        session.sendComposed([args]) { replies, slot in
            session.fill(slot, replies[0])
            done()
        }
    }

    private static func answer(_ session: any TieredClient, _ reply: [UInt8], _ done: @escaping () -> Void) {
        session.sendComposed([[Array("PING".utf8)]]) { _, slot in
            session.fill(slot, reply)
            done()
        }
    }
}

/// Checks every 5 ms whether the lower tiers are quiet (see `SwapOp`); holds itself until done.
private final class QuietPoll {
    private let access: TierAccess
    private let deadline: Int64
    private let then: (Bool) -> Void
    private var timer: Timer?

    init(access: TierAccess, deadline: Int64, _ then: @escaping (Bool) -> Void) {
        self.access = access
        self.deadline = deadline
        self.then = then
    }

    func check() {
        let core = access.core
        let backlog = core.keyLog?.backlog
        let busy = core.locks.heldCount > 0 || (backlog.map { $0.dirty + $0.deletes + $0.checkedOut > 0 } ?? false)
        if !busy || access.loop.nowMillis >= deadline {
            timer = nil          // a fired one-shot timer may go from inside its own callback
            then(!busy)
            return
        }
        if let timer { timer.arm(5) } else { timer = Timer(loop: access.loop, millis: 5) { [self] in check() } }
    }
}
