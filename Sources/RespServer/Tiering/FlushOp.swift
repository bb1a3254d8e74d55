import Tiers

/// FLUSHDB / FLUSHALL through the proxy. Flushing hot alone would let every key come back from
/// below, so it is refused unless `tiers-allow-flush yes`; then the lower tiers of that db (or
/// of every db) are emptied too before the reply.
enum FlushOp {
    static func run(_ args: [[UInt8]], all: Bool, session: ClientSession, access: TierAccess,
                    done: @escaping () -> Void) {
        let core = access.core
        guard core.allowFlush else {
            // PING stands in for the command so that Redis still judges NOAUTH first.
            session.sendComposed([[Array("PING".utf8)]]) { replies, slot in
                let name = all ? "FLUSHALL" : "FLUSHDB"
                session.fill(slot, ReplyParts.isError(replies[0]) ? replies[0] : ReplyParts.errorReply(
                    "ERR tierproxy: \(name) would empty hot while the lower tiers keep every key; "
                    + "set tiers-allow-flush yes to flush the lower tiers too"))
                done()
            }
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
