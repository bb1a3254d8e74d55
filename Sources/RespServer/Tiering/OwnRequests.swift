import Tiers

/// Where a tiered command's own requests go (docs/semantics.md §12): the bring-up's `EXISTS`
/// and promotions, and the capture of the keys it wrote.
///
/// Normally on the client's route, in their place among the client's replies, so that Redis
/// judges them as the client (`NOAUTH`, ACL) and the capture runs in one transaction with the
/// command. While the client has `CLIENT TRACKING` on, that would be visible: Redis remembers
/// every key a read on the connection names as one the client caches (and an `OPTIN` client's
/// `CLIENT CACHING yes` would be spent on the proxy's `EXISTS`), so the client would get
/// invalidations for keys it never read. Then they go beside it, on the loop's own connection,
/// and only the command itself runs on the client's; the key locks keep the proxy's ordering.
struct OwnRequests {
    let session: any TieredClient
    /// On the loop's own connection rather than the client's.
    let beside: Bool

    init(session: any TieredClient) {
        self.session = session
        beside = session.tracksKeys
    }

    /// The db the route's connection is in when a batch starts (and must be in when it ends).
    var homeDB: Int { beside ? session.homeDB : session.db }

    /// Sends `commands` at once; `done` gets every reply and a slot to fill: the client's slot
    /// (see `TieredClient.sendComposed`), or, beside, one the client never sees.
    func send(_ commands: [[[UInt8]]], _ done: @escaping (_ replies: [[UInt8]], _ slot: ReplySlot) -> Void) {
        if beside { session.hot.send(commands) { done($0, ReplySlot()) } } else { session.sendComposed(commands, done) }
    }
}

/// `MULTI command EXPIRE … NX … GET|DUMP k PTTL k … EXEC`: the state of each written key, captured in
/// one transaction with the command, after a rule's default expiry was given. Without a command
/// (beside a tracking client's connection, or after hot refused to queue the transaction) the
/// same requests go without MULTI, right after the command while its keys are still locked:
/// Redis runs one connection's pipelined requests back to back.
struct CaptureBatch {
    private(set) var commands: [[[UInt8]]]
    /// Indices of each key's GET (or DUMP) and PTTL replies in `elements`.
    private let captures: [(read: Int, pttl: Int)]
    private let capture: KeyCapture
    private let transaction: Bool
    /// The rule's default expiries it gives (key, seconds).
    let expiring: [(TierKey, Int)]
    /// Where the command is in `commands` (in a transaction: after MULTI and the promotions).
    let commandIndex: Int

    /// Indices in `elements` of each probed key's `PTTL` reply.
    private let probes: [Int]
    /// Index in `elements` of the `EXISTS` asked before the command (`existedFirst`).
    private let existsFirst: Int?

    /// `promotions` (copies found below) go inside the transaction, before the command; with
    /// `replacing`, each after a `DEL` of what hot holds under its key (the command ran once on
    /// hot without it: `KeyedOp`'s folded bring-up). `existedBefore`: a key asked `EXISTS` right
    /// after MULTI, before anything else. `probed` keys are not read, only asked for their
    /// expiry, which says whether they still exist (`CollectionCapture`).
    init(command: [[UInt8]]?, expiring: [(TierKey, Int)], written: [TierKey], probed: [TierKey] = [],
         capture: KeyCapture, home: Int, promotions: [(TierKey, Found)] = [], replacing: Bool = false,
         existedBefore: TierKey? = nil) {
        transaction = command != nil
        self.capture = capture
        self.expiring = expiring
        var batch = DBBatch(home: home)
        var existsFirst: Int?
        if let command {
            batch.raw([Array("MULTI".utf8)])
            if let k = existedBefore { existsFirst = batch.add([Array("EXISTS".utf8), k.bytes], db: k.db) - 1 }
            for (k, f) in promotions {
                if replacing { batch.add([Array("DEL".utf8), k.bytes], db: k.db) }
                batch.add(Promotion.setCommand(k, f.entry), db: k.db)
            }
            batch.selectHome()
            commandIndex = batch.commands.count
            batch.raw(command)
        } else {
            commandIndex = 0
        }
        for (k, ttl) in expiring {
            batch.add([Array("EXPIRE".utf8), k.bytes, Array(String(ttl).utf8), Array("NX".utf8)], db: k.db)
        }
        // In a transaction EXEC's elements leave MULTI out: one less than the index in `commands`.
        let shift = transaction ? 1 : 0
        var captures: [(read: Int, pttl: Int)] = []
        for k in written {
            let reads = capture.commands(k.bytes)
            let r = batch.add(reads[0], db: k.db)
            let p = batch.add(reads[1], db: k.db)
            captures.append((r - shift, p - shift))
        }
        probes = probed.map { batch.add([Array("PTTL".utf8), $0.bytes], db: $0.db) - shift }
        self.existsFirst = existsFirst
        commands = batch.finish()
        if transaction { commands.append([Array("EXEC".utf8)]) }
        self.captures = captures
    }

    /// The replies the captures are read from: EXEC's elements, if EXEC ran every queued command;
    /// without a transaction the replies themselves, unless one of them is an error the
    /// captures cannot stand (hot did not answer).
    func elements(_ replies: [[UInt8]]) -> [ArraySlice<UInt8>]? {
        guard transaction else {
            let all = replies.map { $0[...] }
            let read = captures.flatMap { [all[$0.read], all[$0.pttl]] }
            return all.count == commands.count && !read.contains(where: KeyCapture.unanswered) ? all : nil
        }
        guard let exec = replies.last, let elements = ReplyParts.elements(exec),
              elements.count == commands.count - 2 else { return nil }
        return elements
    }

    /// Each written key's GET (or DUMP) and PTTL reply, in order, from the replies to `commands`
    /// (no transaction).
    func reads(_ replies: [[UInt8]]) -> [[UInt8]] {
        captures.flatMap { [replies[$0.read], replies[$0.pttl]] }
    }

    /// Whether the key asked `EXISTS` before the command existed then (nil: none was asked).
    func existedFirst(_ elements: [ArraySlice<UInt8>]) -> Bool? {
        existsFirst.map { ReplyParts.integer(elements[$0]) == 1 }
    }

    /// Each probed key's expiry (`.some(nil)`: none), or nil if the command left it absent, from
    /// `elements`. An unreadable reply counts as present without expiry: the flusher then reads
    /// what hot holds.
    func probedExpiries(_ elements: [ArraySlice<UInt8>]) -> [Int64??] {
        let now = wallClockMillis()
        return probes.map { i in
            guard ReplyParts.integer(elements[i]) != nil else { return .some(nil) }
            return KeyCapture.expiry(elements[i], now: now)
        }
    }

    /// Each written key's state, from `elements`; a key the command left as it was (of another
    /// type than its reads expect) has none.
    func states(_ elements: [ArraySlice<UInt8>], of written: [TierKey]) -> [(TierKey, KeyState)] {
        let now = wallClockMillis()
        return zip(written, captures).compactMap { k, c in capture.state(elements[c.read], elements[c.pttl], now: now).map { (k, $0) } }
    }
}
