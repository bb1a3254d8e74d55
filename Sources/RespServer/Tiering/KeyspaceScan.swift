import RESP
import Tiers

/// SCAN through the proxy when the keyspace sees below (`tiers-keyspace yes`): hot's own SCAN
/// first, then each lower tier's listing, one page per call, behind one cursor (`ScanCursor`).
///
/// A key both in hot and below is returned once: in the lower phase a listed key that hot holds
/// is left out if hot has held it, untouched, since before the scan began (`OBJECT IDLETIME`
/// at least the scan's age plus a second: then hot's phase, which ran meanwhile, returned it).
/// Any other key hot holds now (brought up or written during the scan) is returned again, as
/// Redis allows, so a key present throughout is never missed. Under an LFU maxmemory-policy hot
/// keeps no idle time, and such keys are returned again too.
final class KeyspaceScan {
    private let args: [[UInt8]]
    private let session: any TieredClient
    private let access: TierAccess
    private let done: () -> Void
    private let pages: LowerKeyPages
    private var filter = KeyFilter()
    private var count = 10

    init(_ args: [[UInt8]], session: any TieredClient, access: TierAccess, done: @escaping () -> Void) {
        self.args = args
        self.session = session
        self.access = access
        self.done = done
        pages = LowerKeyPages(access: access, db: session.db)
    }

    func start() {
        guard let cursor = ScanCursor.parse(args[1]) else { answer(ReplyParts.errorReply("ERR invalid cursor")); return }
        readOptions()
        switch cursor {
        case .hot(let began, let hot): hotPhase(began: began, hot: hot)
        case .lower(let id):
            lowerPhase(ScanTickets.shared.ticket(id) ?? ScanTicket(tier: 0, continuation: nil, began: nil))
        }
    }

    /// MATCH, COUNT and TYPE as far as they are well formed; hot judges the whole request.
    private func readOptions() {
        var i = 2
        while i + 1 < args.count {
            let value = args[i + 1]
            switch String(decoding: args[i], as: UTF8.self).lowercased() {
            case "match": filter.match = value == [UInt8(ascii: "*")] ? nil : GlobPattern(value)
            case "count": if let n = Int(String(decoding: value, as: UTF8.self)), n >= 1 { count = n }
            case "type": filter.type = String(decoding: value, as: UTF8.self).lowercased()
            default: break
            }
            i += 2
        }
    }

    /// The client's SCAN with hot's cursor; hot's "0" hands over to the lower tiers.
    private func hotPhase(began: UInt64, hot: UInt64) {
        var request = args
        request[1] = Array(String(hot).utf8)
        session.sendComposed([request]) { [self] replies, slot in
            let reply = replies[0]
            guard let parts = ReplyParts.elements(reply), parts.count == 2,
                  case let cursorBytes?? = ReplyParts.bulk(parts[0]),
                  let next = UInt64(String(decoding: cursorBytes, as: UTF8.self)), next >> ScanCursor.hotBits == 0 else {
                finish(slot, reply)    // an error, or a cursor past 2^40 (no such table): as hot said
                return
            }
            let cursor = next != 0 ? ScanCursor.hot(began: began, hot: next).value
                : ScanCursor.lower(ticket: ScanTickets.shared.issue(ScanTicket(tier: 0, continuation: nil, began: began))).value
            finish(slot, Self.scanReply(cursor, keysReply: Array(parts[1])))
        }
    }

    /// One page of the ticket's tier; hot is asked, in one batch, to judge the request's options
    /// (its own errors, exactly) and how long it has held each listed key.
    private func lowerPhase(_ ticket: ScanTicket) {
        guard ticket.tier < pages.tiers.count else { hotPhase(began: ScanCursor.nowStamp(), hot: 0); return }
        pages.page(ticket.tier, after: ticket.continuation, limit: count, filter: filter, skipWarmHeld: true) { [self] result in
            switch result {
            case .failure(let e):
                answer(ReplyParts.errorReply("ERR tierproxy: SCAN could not list the \(pages.tiers[ticket.tier].role) tier: \(e)"))
            case .success(let page):
                var next = ticket
                if let token = page.next { next.continuation = token } else { next.tier += 1; next.continuation = nil }
                let cursor = next.tier < pages.tiers.count ? ScanCursor.lower(ticket: ScanTickets.shared.issue(next)).value : 0
                withoutHotHeld(page.keys, began: ticket.began) { [self] keys, slot, error in
                    finish(slot, error ?? Self.scanReply(cursor, keysReply: ReplyParts.command(keys)))
                }
            }
        }
    }

    /// `keys` without those hot has held untouched since the scan began; `error` is hot's
    /// verdict on the request's options when it refuses them.
    private func withoutHotHeld(_ keys: [[UInt8]], began: UInt64?,
                                _ then: @escaping ([[UInt8]], ReplySlot, [UInt8]?) -> Void) {
        var judge = args
        judge[1] = Array("0".utf8)
        if let i = (2..<judge.count).first(where: { asciiCaseEqual(judge[$0], "count") && $0 + 1 < judge.count }),
           Int(String(decoding: judge[i + 1], as: UTF8.self)).map({ $0 >= 1 }) ?? false {
            judge[i + 1] = Array("1".utf8)   // a valid COUNT: hot need not walk its table to judge
        }
        let idle = began.map { _ in keys.map { [Array("OBJECT".utf8), Array("IDLETIME".utf8), $0] } } ?? []
        let elapsed = began.map(ScanCursor.elapsedSeconds) ?? 0
        KeyspaceOp.withProbes(idle, then: judge, session: session) { replies, verdict, slot in
            if ReplyParts.isError(verdict) { then([], slot, verdict); return }
            let kept = keys.indices.filter { i in
                guard i < replies.count, let seconds = ReplyParts.integer(replies[i]) else { return true }
                return Int64(seconds) < elapsed + 1
            }.map { keys[$0] }
            then(kept, slot, nil)
        }
    }

    static func scanReply(_ cursor: UInt64, keysReply: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(keysReply.count + 32)
        RESPWriter.arrayHeader(2, into: &out)
        RESPWriter.bulk(String(cursor), into: &out)
        return out + keysReply
    }

    private func finish(_ slot: ReplySlot, _ reply: [UInt8]) {
        session.fill(slot, reply)
        done()
    }

    private func answer(_ reply: [UInt8]) { KeyspaceOp.answer(session, reply, done) }
}
