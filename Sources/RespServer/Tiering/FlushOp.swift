import Tiers

/// FLUSHDB / FLUSHALL through the proxy. Flushing hot alone would let every key come back from
/// below, so it is refused unless `tiers-allow-flush yes`; then the lower tiers of that db (or
/// of every db) are emptied too before the reply.
enum FlushOp {
    static func run(_ args: [[UInt8]], all: Bool, session: any TieredClient, access: TierAccess,
                    done: @escaping () -> Void) {
        let core = access.core
        guard core.allowFlush else {
            refuse(args, because: "\(all ? "FLUSHALL" : "FLUSHDB") would empty hot while the lower tiers keep every key; "
                   + "set tiers-allow-flush yes to flush the lower tiers too", session: session, done: done)
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

    /// Answers `-ERR tierproxy: <reason>` in place of `args`, unless Redis itself refuses it
    /// first: it is queued in a transaction that is then discarded, so NOAUTH, ACL and arity
    /// are judged by Redis and nothing runs.
    static func refuse(_ args: [[UInt8]], because reason: String, session: any TieredClient, done: @escaping () -> Void) {
        // DISCARD clears the client's watches: a guard keeps them.
        let watch = WatchGuard(session: session)
        let judge = {
            session.sendComposed([[Array("MULTI".utf8)], args, [Array("DISCARD".utf8)]]) { replies, slot in
                let judged = replies[1]
                let reply = ReplyParts.isError(judged) ? judged : ReplyParts.errorReply("ERR tierproxy: " + reason)
                let answer = { session.fill(slot, reply); done() }
                if let watch { watch.restore(answer) } else { answer() }
            }
        }
        if let watch { watch.arm(judge) } else { judge() }
    }
}
