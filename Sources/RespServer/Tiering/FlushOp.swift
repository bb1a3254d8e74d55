import Tiers

/// FLUSHDB / FLUSHALL through the proxy. Flushing hot alone would let every key come back from
/// below, so it is refused unless `tiers-allow-flush yes`; then the lower tiers of that db (or
/// of every db) are emptied too before the reply.
enum FlushOp {
    static func run(_ args: [[UInt8]], all: Bool, session: ClientSession, access: TierAccess,
                    done: @escaping () -> Void) {
        let core = access.core
        guard core.allowFlush else {
            // Queued in a transaction that is then discarded: Redis still judges NOAUTH, ACL
            // and arity first, and runs nothing.
            // DISCARD clears the client's watches: a guard keeps them.
            let watch = WatchGuard(session: session)
            let judge = {
                session.sendComposed([[Array("MULTI".utf8)], args, [Array("DISCARD".utf8)]]) { replies, slot in
                    let name = all ? "FLUSHALL" : "FLUSHDB"
                    let judged = replies[1]
                    let reply = ReplyParts.isError(judged) ? judged : ReplyParts.errorReply(
                        "ERR tierproxy: \(name) would empty hot while the lower tiers keep every key; "
                        + "set tiers-allow-flush yes to flush the lower tiers too")
                    let answer = { session.fill(slot, reply); done() }
                    if let watch { watch.restore(answer) } else { answer() }
                }
            }
            if let watch { watch.arm(judge) } else { judge() }
            return
        }
        let db: Int? = all ? nil : session.db
        session.sendComposed([args]) { replies, slot in
            guard !ReplyParts.isError(replies[0]) else { session.fill(slot, replies[0]); done(); return }
            core.dropPendingStates(db: db)
            access.purge(db: db) { result in
                if case .failure(let e) = result {
                    session.fill(slot, ReplyParts.errorReply("ERR tierproxy: hot was flushed but a lower tier was not: \(e)"))
                } else {
                    session.fill(slot, replies[0])
                }
                done()
            }
        }
    }
}
