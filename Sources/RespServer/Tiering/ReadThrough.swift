import Reactor
import Tiers

/// GET and MGET go to hot as they are; only a nil (a whole GET, or MGET positions) looks below
/// (docs/semantics.md §1, 2: an error is Redis's answer, never a miss). A copy found below is
/// answered at once and promoted to hot when no write of the key is under way.
enum ReadThrough {
    /// What Redis answers GET of a key of another type (found below as a `DUMP` payload).
    static let wrongType = Array("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n".utf8)

    /// Hot answered nil to GET `key`: answer from below, in `slot`.
    static func get(_ key: TierKey, nullReply: [UInt8], session: any TieredClient, access: TierAccess, slot: ReplySlot) {
        guard ReplyParts.isNull(nullReply) else { session.fill(slot, nullReply); return }
        let generation = access.core.generations.snapshot(key)
        access.lookup(key) { result in
            switch result {
            case .failure(let e):
                session.fill(slot, ReplyParts.errorReply("ERR tierproxy: \(e)"))
            case .success(nil):
                session.fill(slot, nullReply)
            case .success(let found?):
                // Answered once hot holds it too: the client's next command finds it there.
                promote(key, found, since: generation, session: session, access: access) {
                    session.fill(slot, found.entry.type == .string ? ReplyParts.bulkReply(found.entry.value) : wrongType)
                }
            }
        }
    }

    /// Hot answered MGET with `reply`; its nil positions are looked up below. Any tier error
    /// answers the whole command with one error (a RESP2 array cannot carry one).
    static func mget(_ keys: [[UInt8]], db: Int, reply: [UInt8], session: any TieredClient, access: TierAccess,
                     slot: ReplySlot) {
        guard let elements = ReplyParts.elements(reply), elements.count == keys.count else {
            session.fill(slot, reply)   // an error (NOAUTH, NOPERM …), or not what MGET answers
            return
        }
        let missing = elements.indices.filter { ReplyParts.isNull(elements[$0]) }
        if missing.isEmpty { session.fill(slot, reply); return }
        var found = [Int: Found]()
        var failure: TierError?
        var remaining = missing.count
        let generations = missing.map { access.core.generations.snapshot(TierKey(db: db, keys[$0])) }
        for i in missing {
            let key = TierKey(db: db, keys[i])
            access.lookup(key) { result in
                switch result {
                case .failure(let e): failure = failure ?? e
                case .success(let f?): found[i] = f
                case .success(nil): break
                }
                remaining -= 1
                guard remaining == 0 else { return }
                if let failure {
                    session.fill(slot, ReplyParts.errorReply("ERR tierproxy: \(failure)"))
                } else {
                    var out = Array(reply[..<elements[0].startIndex])      // the array header
                    for (j, element) in elements.enumerated() {
                        // MGET answers nil for a key of another type, as Redis does.
                        if let f = found[j], f.entry.type == .string { out += ReplyParts.bulkReply(f.entry.value) } else { out += element }
                    }
                    var promoting = found.count
                    if promoting == 0 { session.fill(slot, out) }
                    for (n, j) in missing.enumerated() {
                        guard let f = found[j] else { continue }
                        promote(TierKey(db: db, keys[j]), f, since: generations[n], session: session, access: access) {
                            promoting -= 1
                            if promoting == 0 { session.fill(slot, out) }
                        }
                    }
                }
                }
        }
    }

    /// Writes a found copy to hot (and to warm when it came from cold), on the loop's own hot
    /// connection, only if no tiered command holds the key and none wrote it since it was read.
    private static func promote(_ key: TierKey, _ found: Found, since generation: KeyGeneration,
                                session: any TieredClient, access: TierAccess, then answer: @escaping () -> Void) {
        let core = access.core
        guard !found.entry.isExpired(at: wallClockMillis()), !core.swapping, core.locks.tryAcquire(key) else { answer(); return }
        // A tiered write of the key that ended after the lookup began (a delete, say) may have
        // left hot without the key: promoting what was read would bring it back.
        guard core.generations.unchanged(since: generation) else { core.locks.release([key]); answer(); return }
        // From here every tiered write of the key waits for the lock; one that came before is in
        // hot already, and NX lets it win.
        var batch = DBBatch(home: session.homeDB)
        batch.add(Promotion.setCommand(key, found.entry), db: key.db)
        session.hot.send(batch.finish()) { replies in
            if batch.ours(replies).first.map({ !ReplyParts.isError($0) }) == true {   // not BUSYKEY either
                core.stats.promotions.add(1)
                access.metrics.promoted(found.tier)
            }
            answer()
            access.copyUp(key, found) { core.locks.release([key]) }
        }
    }
}
