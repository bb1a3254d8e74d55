import RESP
import Reactor
import Tiers

/// The state a client's own transaction left its tiered keys in, read inside that transaction.
///
/// The proxy cannot wrap commands the client queued itself, but it can queue more: in place of
/// the client's EXEC it sends `DUMP k` and `PTTL k` for each key the transaction's tiered writes
/// touch, then EXEC, so these run after the client's commands, atomically with them. Their
/// `+QUEUED` replies are dropped, their results are cut off the end of EXEC's array, and each
/// key's state goes below per its rule before EXEC's reply goes out (docs/semantics.md §3, §11),
/// as for any other write. The keys' locks are held from before EXEC is sent until their states
/// have their place below, so no other write of them can reach the lower tiers in between. A
/// transaction whose keys live in a database other than the connection's (a SELECT inside it)
/// is recorded for the flusher instead, which reads hot later (`TransactionSync.run`). For a
/// client with CLIENT TRACKING on, queued reads would make Redis track the keys as the client's:
/// EXEC then goes alone, and the captures follow it on the loop's own connection, the keys still
/// locked (`OwnRequests`).
struct ExecCapture {
    let keys: [TierKey]
    let db: Int

    /// nil: nothing to capture, or the transaction must fall back to `TransactionSync.run`.
    init?(writes: [TierKey], db: Int, core: TieringCore) {
        let keys = KeyLocks.ordered(writes.filter(core.isTiered))
        guard !keys.isEmpty, keys.allSatisfy({ $0.db == db }) else { return nil }
        self.keys = keys
        self.db = db
    }

    /// Takes the keys' locks, sends the captures and EXEC on the client's connection, and
    /// answers EXEC's slot once the states are below; then `done`.
    func run(session: any TieredClient, access: TierAccess, hot: HotClient, homeDB: Int, done: @escaping () -> Void) {
        // The queued commands may leave any type: DUMP reads each (`KeyCapture`).
        let commands = keys.flatMap { KeyCapture.dump.commands($0.bytes) } + [[Array("EXEC".utf8)]]
        access.core.locks.acquire(keys, on: access.loop) { [self] in
            let own = OwnRequests(session: session)
            if own.beside {
                runBeside(own, session: session, access: access, hot: hot, homeDB: homeDB, done: done)
                return
            }
            session.sendComposed(commands) { replies, slot in
                // The captures' +QUEUED replies show nothing; EXEC's is the last.
                execReplied(replies[replies.count - 1], slot, access: access, hot: hot, homeDB: homeDB) { slot, reply in
                    session.fill(slot, reply)
                    done()
                }
            }
        }
    }

    /// EXEC alone, then the captures beside the client's connection; their replies are joined to
    /// EXEC's as if they had been queued in it.
    private func runBeside(_ own: OwnRequests, session: any TieredClient, access: TierAccess, hot: HotClient, homeDB: Int,
                           done: @escaping () -> Void) {
        let answer: (ReplySlot, [UInt8]) -> Void = { slot, reply in
            session.fill(slot, reply)
            done()
        }
        session.sendComposed([[Array("EXEC".utf8)]]) { [self] replies, slot in
            guard let elements = ReplyParts.elements(replies[0]) else {
                execReplied(replies[0], slot, access: access, hot: hot, homeDB: homeDB, fill: answer)
                return
            }
            let capture = CaptureBatch(command: nil, expiring: [], written: keys, capture: .dump, home: own.homeDB)
            own.send(capture.commands) { [self] captured, _ in
                var joined = [UInt8]()
                let reads = capture.reads(captured)
                RESPWriter.arrayHeader(elements.count + reads.count, into: &joined)
                for e in elements { joined += e }
                for r in reads { joined += r }
                execReplied(joined, slot, access: access, hot: hot, homeDB: homeDB, fill: answer)
            }
        }
    }

    /// EXEC's reply: the client's part goes to `fill` once the captured states are below.
    private func execReplied(_ reply: [UInt8], _ slot: ReplySlot, access: TierAccess, hot: HotClient, homeDB: Int,
                             fill: @escaping (ReplySlot, [UInt8]) -> Void) {
        let core = access.core
        guard let elements = ReplyParts.elements(reply), elements.count >= 2 * keys.count else {
            // Null (a WATCH fired) or an error (EXECABORT): nothing ran.
            core.locks.release(keys)
            fill(slot, reply)
            return
        }
        let own = elements.count - 2 * keys.count
        var clientReply = [UInt8]()
        RESPWriter.arrayHeader(own, into: &clientReply)
        for e in elements[..<own] { clientReply += e }
        let now = wallClockMillis()
        var states: [(TierKey, KeyState)] = []
        for (i, key) in keys.enumerated() {
            let dump = elements[own + 2 * i], pttl = elements[own + 2 * i + 1]
            if KeyCapture.unanswered(dump) {
                // Hot could not say: the flusher reads it again later.
                TransactionSync.record([key], ran: true, access: access) {}
                continue
            }
            core.generations.bump(key)
            states.append((key, KeyCapture.dumped(dump, pttl, now: now)))
        }
        var remaining = states.count, unordered = states.count
        var failed: [TierKey] = []
        func ordered() {
            unordered -= 1
            guard unordered == 0 else { return }
            for (k, _) in states { core.generations.bump(k) }
            core.locks.release(keys)
        }
        if states.isEmpty { core.locks.release(keys); fill(slot, clientReply); return }
        for (key, state) in states {
            LowerWrite.apply(key, state, access: access, ordered: ordered) { result in
                if case .failure(let e) = result {
                    Log.warning("A key written in a transaction reached neither a lower tier nor the key log (\(e)); removing it everywhere")
                    failed.append(key)
                }
                remaining -= 1
                guard remaining == 0 else { return }
                // The transaction ran, so its reply stands; a state that could not go below
                // must not leave an older copy there to come back.
                if failed.isEmpty { fill(slot, clientReply); return }
                LowerWrite.removeEverywhere(failed, access: access, hot: hot, homeDB: homeDB) { fill(slot, clientReply) }
            }
        }
    }
}
