import RESP
import Tiers

/// The keyspace commands through the proxy (docs/semantics.md "Keyspace commands"). With
/// `tiers-keyspace yes` they see the lower tiers: SCAN (`KeyspaceScan`), and KEYS, DBSIZE and
/// RANDOMKEY here; with `no` they run on hot as sent, as plain Redis answers them.
enum KeyspaceOp {
    enum Command: Equatable {
        case scan, keys, dbsize, randomkey
    }

    static func run(_ command: Command, _ args: [[UInt8]], session: any TieredClient, access: TierAccess,
                    done: @escaping () -> Void) {
        guard access.core.settings.keyspaceSeesBelow, access.hasLowerTiers else { passThrough(args, session, done); return }
        let pages = LowerKeyPages(access: access, db: session.db)
        switch command {
        case .scan:
            KeyspaceScan(args, session: session, access: access, done: done).start()
        case .keys:
            keys(args, pages: pages, session: session, done)
        case .dbsize:
            dbsize(args, pages: pages, session: session, done)
        case .randomkey:
            randomKey(args, pages: pages, session: session, done)
        }
    }

    /// Hot's KEYS, and the live keys below that hot does not hold: each key once. Hot answers
    /// first, so a request Redis refuses (NOAUTH, an ACL) costs no listing.
    private static func keys(_ args: [[UInt8]], pages: LowerKeyPages, session: any TieredClient, _ done: @escaping () -> Void) {
        session.sendComposed([args]) { replies, slot in
            guard let hot = ReplyParts.elements(replies[0]) else { session.fill(slot, replies[0]); done(); return }
            let pattern = args[1] == [UInt8(ascii: "*")] ? nil : GlobPattern(args[1])
            pages.all(filter: KeyFilter(match: pattern)) { result in
                guard case .success(let below) = result else { session.fill(slot, failure(result, "KEYS")); done(); return }
                var seen = Set<[UInt8]>()
                var keys = [[UInt8]]()
                for element in hot {
                    guard case let key?? = ReplyParts.bulk(element) else { continue }
                    if seen.insert(key).inserted { keys.append(key) }
                }
                for key in below where seen.insert(key).inserted { keys.append(key) }
                session.fill(slot, ReplyParts.command(keys))
                done()
            }
        }
    }

    /// Hot's DBSIZE plus the live keys below that hot does not hold (one EXISTS per 1000). Hot
    /// judges the request first, so one Redis refuses costs no listing.
    private static func dbsize(_ args: [[UInt8]], pages: LowerKeyPages, session: any TieredClient, _ done: @escaping () -> Void) {
        session.sendComposed([args]) { replies, judged in
            guard ReplyParts.integer(replies[0]) != nil else { session.fill(judged, replies[0]); done(); return }
            // The answer takes a later slot; this one shows nothing, and is filled last, so the
            // client is never seen to have every reply in meanwhile.
            let finish = { (slot: ReplySlot, reply: [UInt8]) in
                session.fill(slot, reply)
                session.fill(judged, [])
                done()
            }
            pages.all(filter: KeyFilter()) { result in
                guard case .success(let below) = result else {
                    session.sendComposed([[Array("PING".utf8)]]) { _, slot in finish(slot, failure(result, "DBSIZE")) }
                    return
                }
                let batches = stride(from: 0, to: below.count, by: 1000).map { i in
                    [Array("EXISTS".utf8)] + below[i..<min(i + 1000, below.count)]
                }
                withProbes(batches, then: args, session: session) { probed, size, slot in
                    guard let hot = ReplyParts.integer(size) else { finish(slot, size); return }
                    let held = probed.reduce(0) { $0 + (ReplyParts.integer($1) ?? 0) }
                    var out = [UInt8]()
                    RESPWriter.integer(hot + below.count - held, into: &out)
                    finish(slot, out)
                }
            }
        }
    }

    /// Hot's RANDOMKEY; only when hot has no key, one from the first lower page that has a live one.
    private static func randomKey(_ args: [[UInt8]], pages: LowerKeyPages, session: any TieredClient, _ done: @escaping () -> Void) {
        session.sendComposed([args]) { replies, slot in
            guard ReplyParts.isNull(replies[0]) else { session.fill(slot, replies[0]); done(); return }
            func look(_ index: Int, _ after: String?) {
                guard index < pages.tiers.count else { session.fill(slot, replies[0]); done(); return }
                pages.page(index, after: after, limit: 100, filter: KeyFilter(), skipWarmHeld: false) { result in
                    switch result {
                    case .failure(let e):
                        session.fill(slot, ReplyParts.errorReply("ERR tierproxy: RANDOMKEY could not list a lower tier: \(e)"))
                        done()
                    case .success(let page):
                        if let key = page.keys.randomElement() { session.fill(slot, ReplyParts.bulkReply(key)); done(); return }
                        if let next = page.next { look(index, next) } else { look(index + 1, nil) }
                    }
                }
            }
            look(0, nil)
        }
    }

    private static func failure<T>(_ result: Result<T, TierError>, _ command: String) -> [UInt8] {
        guard case .failure(let e) = result else { return [] }
        return ReplyParts.errorReply("ERR tierproxy: \(command) could not list a lower tier: \(e)")
    }

    /// Sends the proxy's `probes` of keys (EXISTS, OBJECT IDLETIME) and then the client's
    /// `command`, and gives their replies and the command's slot. Normally all in one batch on the
    /// client's route; while the client tracks keys, the probes go beside it, on the loop's own
    /// connection in the client's db, so Redis does not take them for reads the client caches
    /// (docs/semantics.md §12).
    static func withProbes(_ probes: [[[UInt8]]], then command: [[UInt8]], session: any TieredClient,
                           _ done: @escaping (_ probed: [[UInt8]], _ reply: [UInt8], _ slot: ReplySlot) -> Void) {
        guard session.tracksKeys, !probes.isEmpty else {
            session.sendComposed(probes + [command]) { replies, slot in done(Array(replies.dropLast()), replies[replies.count - 1], slot) }
            return
        }
        let select = { (db: Int) in [Array("SELECT".utf8), Array(String(db).utf8)] }
        session.hot.send([select(session.db)] + probes + [select(session.homeDB)]) { replies in
            let probed = Array(replies.dropFirst().dropLast())
            session.sendComposed([command]) { replies, slot in done(probed, replies[0], slot) }
        }
    }

    /// Runs the request on hot and answers hot's reply.
    static func passThrough(_ args: [[UInt8]], _ session: any TieredClient, _ done: @escaping () -> Void) {
        session.sendComposed([args]) { replies, slot in
            session.fill(slot, replies[0])
            done()
        }
    }

    /// Answers `reply` in the request's place (a PING holds the place among the replies).
    static func answer(_ session: any TieredClient, _ reply: [UInt8], _ done: @escaping () -> Void) {
        session.sendComposed([[Array("PING".utf8)]]) { _, slot in
            session.fill(slot, reply)
            done()
        }
    }
}
