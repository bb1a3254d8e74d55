import RESP
import Tiers
import Reactor

/// Where the session meets the tiering code (Sources/RespServer/Tiering): which requests are
/// tiered, how a tiered command runs while the client's later requests wait, and how the
/// tiering code sends and answers for the client (`sendComposed`, `fill`: `TieredClient`).
extension ClientSession {
    /// The tiered handling `frame` needs beyond forwarding (GET and MGET need none: their
    /// replies are read on the way back), with its arguments; nil for every other command.
    func tieredRoute(_ frame: RequestFrame, at offset: Int) -> (TieredCommand.Route, [[UInt8]])? {
        guard sequenced && !inTransaction else { return nil }
        return tieredCommand(frame, at: offset)
    }

    /// How `frame` is tiered, with its arguments, whatever the session's mode; nil if it is not
    /// (or is GET/MGET, which are only read on the way back).
    func tieredCommand(_ frame: RequestFrame, at offset: Int) -> (TieredCommand.Route, [[UInt8]])? {
        guard let access = worker.tierAccess, frame.name != Commands.get && frame.name != Commands.mget
                && worker.mayBeTiered(frame.name) else { return nil }
        let args = arguments(frame, at: offset)
        let core = access.core
        return TieredCommand.route(frame.name, args, table: worker.commandTable, scripts: core.scripts,
                                   strictScripts: core.strictScripts).map { ($0, args) }
    }

    /// Runs a tiered command while the client's later requests wait; they are parsed again
    /// once it has answered. Returns the command if it waits in a batch that later requests of
    /// its key may join (`joinBatch`).
    @discardableResult
    func startTiered(_ route: TieredCommand.Route, _ args: [[UInt8]]) -> KeyedOp? {
        phase = .runningTiered
        updateReading()
        parser.reset()
        let access = worker.tierAccess!
        let finished: () -> Void = { [self] in tieredFinished() }
        switch route {
        case .keyed(let plan) where mayOverlap(route):
            // Later requests wait only until this one is on its way; its reply holds their place.
            let op = KeyedOp(session: self, args: args, plan: plan, access: access, sent: finished, done: {})
            op.start()
            return op.gathering == nil ? nil : op
        case .keyed(let plan):
            KeyedOp(session: self, args: args, plan: plan, access: access, done: finished).start()
        case .flush(let all):
            FlushOp.run(args, all: all, session: self, access: access, done: finished)
        case .swapdb:
            SwapOp.run(args, session: self, access: access, done: finished)
        case .keyspace(let command):
            KeyspaceOp.run(command, args, session: self, access: access, done: finished)
        case .refused(let message):
            sendComposed([[Array("PING".utf8)]]) { [self] _, slot in
                fill(slot, ReplyParts.errorReply(message))
                finished()
            }
        case .blocking(let plan):
            // Later requests are read again once it is sent: it may block on hot for long.
            BlockingRun(session: self, args: args, plan: plan, access: access, done: finished).start()
        case .get, .mget:
            break
        }
        return nil
    }

    /// The request after `previous` (a command waiting in an open `KeyBatch`), if it joins that
    /// batch: a write of the same key the router would run tiered at once, with nothing the
    /// session must notice or judge first. Returns it then (it is the one later requests wait
    /// for now: `previous`, which answers for it too); nil: nothing was done, and the request
    /// waits to be parsed again.
    func joinBatch(_ frame: RequestFrame, after previous: KeyedOp) -> KeyedOp? {
        guard worker.proxyAuth == nil, !frame.isEmpty, frame.name != Commands.quit, frame.name != Commands.tiers,
              !pinned, worker.canShare(frame), worker.tierAccess != nil else { return nil }
        // The same command as the one before: routed as that was (`KeyedOp.repeatedPlan`).
        if let plan = previous.repeatedPlan(frame.name, argc: frame.argc), sequenced && !inTransaction, mayOverlap(.keyed(plan)) {
            return previous.follow(frame, plan, routed: nil) ? previous : nil
        }
        guard case (.keyed(let plan), let args)? = tieredRoute(frame, at: 0), mayOverlap(.keyed(plan)) else { return nil }
        return previous.follow(frame, plan, routed: args) ? previous : nil
    }

    /// Whether a tiered command may travel as it is, its reply read on the way back: a blocking
    /// command with nothing to bring up, or a blind write whose keys' locks it could take. Its
    /// reply's handler is left in `nextHandler`.
    /// `shared`: the request goes on the loop's shared connection (else on the client's own).
    func travelsAsItIs(_ tiered: (TieredCommand.Route, [[UInt8]]), shared: Bool) -> Bool {
        if case (.blocking(let plan), let args) = tiered, let access = worker.tierAccess,
           dbChangesInFlight > 0 || BlockingRun.fastPath(plan, args, db: db, access: access) {
            // Nothing to bring up (or its db is not settled yet): it runs as it is, and what
            // it took is captured once it has answered (`BlockedWrite`).
            let written = plan.written.map { TierKey(db: $0.db ?? db, args[$0.index]) }
            if !written.isEmpty {
                let mark = BlockingMark(plan.deletes.map { TierKey(db: $0.db ?? db, args[$0.index]) }, core: access.core)
                nextHandler = { [unowned self] reply, slot in
                    BlockedWrite.answered(written, reply: reply, session: self, access: access) { [weak self] in
                        mark?.release()     // before the reply (`BlockingMark`)
                        self?.fill(slot, reply)
                    }
                }
            }
            return true
        } else if case (.keyed(let plan), let args) = tiered, let blind = plan.blind,
                  let handler = pipelined(blind, plan, args, shared: shared) {
            // Travels as it is, pipelined; its reply is read on the way back.
            nextHandler = handler
            return true
        }
        return false
    }

    /// A blind write's reply handler, with its keys' locks taken; nil when it must take the
    /// ordinary tiered way instead (a key busy, a SELECT still in flight, a rule's default expiry).
    func pipelined(_ blind: BlindWrite, _ plan: TieredCommand.KeyedPlan, _ args: [[UInt8]], shared: Bool) -> ReplyHandler? {
        guard dbChangesInFlight == 0, let access = worker.tierAccess, !access.core.swapping else { return nil }
        let core = access.core
        var keys: [TierKey] = []
        keys.reserveCapacity(plan.written.count)
        var allWriteBehind = true
        for k in plan.written {
            let key = TierKey(db: db, args[k.index])
            let rule = core.rules.rule(for: key.bytes)
            if blind.expiry == .none && rule.ttlSeconds != nil { return nil }
            guard rule.policy != .hotOnly, !keys.contains(key) else { continue }
            allWriteBehind = allWriteBehind && rule.policy == .writeBehind
            keys.append(key)
        }
        // Write-behind states are applied in reply order, and one connection answers in the
        // order hot applied its writes: blind writes of one key on that connection need not
        // wait for one another (`KeyLocks.tryAcquire(_:sharedBy:)`). A write-through one must:
        // its copies below could overtake each other.
        let connection: AnyObject? = shared ? worker.shared : dedicated
        let locked = allWriteBehind && core.keyLog?.marksAtOnce == true && connection != nil
            ? core.locks.tryAcquire(keys, sharedBy: ObjectIdentifier(connection!))
            : core.locks.tryAcquire(keys)
        guard locked else { return nil }
        nextHandlerLocks = keys
        return BlindWriteRun.handler(blind, args, db: db, locked: keys, access: access, hot: worker.hot,
                                     homeDB: worker.config.upstream.db) { [unowned self] slot, reply in fill(slot, reply) }
    }

    /// The client's own `EXEC` of a transaction that wrote tiered keys (`ExecCapture`).
    func runExec(_ frame: RequestFrame, _ exec: ExecCapture) {
        client.input.drain(frame.length)
        noticeTransaction(frame.name)
        startExec(exec)
    }

    /// The client's EXEC, when its transaction wrote tiered keys: the states it leaves them in
    /// are read inside it (`ExecCapture`), and later requests wait until EXEC has answered.
    func startExec(_ capture: ExecCapture) {
        phase = .runningTiered
        updateReading()
        parser.reset()
        capture.run(session: self, access: worker.tierAccess!, hot: worker.hot, homeDB: worker.config.upstream.db) { [self] in
            tieredFinished()
        }
    }

    /// The request whose reply `nextHandler` was to take is not sent now: let its locks go.
    func abandonNextHandler() {
        guard nextHandler != nil else { return }
        nextHandler = nil
        if let access = worker.tierAccess { access.core.locks.release(nextHandlerLocks) }
        nextHandlerLocks = []
    }

    func takesKeyLocks(_ route: TieredCommand.Route?) -> Bool {
        switch route {
        case .keyed?, .blocking?: return true
        default: return false
        }
    }

    /// True if a tiered command may start while earlier replies are still owed, and later
    /// requests may go once it has been sent: its db is settled (no SELECT in flight), the proxy's
    /// own transaction cannot touch the client's watches, and the client uses the proxy's own
    /// credentials (so the proxy's captures will not be refused and need running again), and does
    /// not track keys (its bring-up runs beside its connection: only once its earlier requests ran).
    func mayOverlap(_ route: TieredCommand.Route) -> Bool {
        // A blocking command's bring-up goes beside the client's connection, so only its db
        // must be settled (`BlockingRun`; dispatch sends it as it is otherwise).
        if case .blocking = route { return dbChangesInFlight == 0 }
        guard case .keyed = route else { return false }
        return dbChangesInFlight == 0 && watchedKeys.isEmpty && !authenticatedItself && !tracking.on
    }

    func tieredFinished() {
        if phase == .runningTiered { phase = .reading }
        resumeReading()
    }

    /// Sends `commands` on the client's route as one write (nothing of another client's can
    /// come between them on a shared connection); `done` gets every reply, and the slot of the
    /// last one, which it must fill with what the client is to see. The others show nothing.
    func sendComposed(_ commands: [[[UInt8]]], _ done: @escaping (_ replies: [[UInt8]], _ slot: ReplySlot) -> Void) {
        // Nothing to send (e.g. a capture with no key to read): no reply, and a slot nobody waits on.
        guard !commands.isEmpty else { done([], ReplySlot()); return }
        var bytes = [UInt8]()
        for c in commands { RESPWriter.command(c, into: &bytes) }
        sendComposed(encoded: bytes, count: commands.count, done)
    }

    /// As `sendComposed`, for `count` (at least one) commands already in RESP, back to back.
    func sendComposed(encoded bytes: [UInt8], count: Int, _ done: @escaping (_ replies: [[UInt8]], _ slot: ReplySlot) -> Void) {
        if isClosed || failure != nil {
            let error = ReplyParts.errorReply("ERR tierproxy: client connection closed")
            done(Array(repeating: error, count: count), ReplySlot())
            return
        }
        var collected: [[UInt8]] = []
        let last = count - 1
        for i in 0...last {
            expectReply(handler: { [self] reply, slot in
                collected.append(reply)
                // Only the last slot is filled the full way (its output released, flushed): the
                // replies before it are all intercepted here, so nothing waits behind their slots
                // that does not wait behind the last one too.
                if i < last { slot.reply = [] } else { done(collected, slot) }
            })
        }
        sendProxyRequest(bytes, replies: count)
    }

    /// A tiered write queued in the client's own transaction: its keys are copied below once
    /// EXEC has run (see `TransactionSync`).
    func noteTransactionWrite(_ frame: RequestFrame, at offset: Int) {
        switch tieredCommand(frame, at: offset) {
        case (.keyed(let plan), let args)?:
            transactionWrites += plan.written.map { TierKey(db: $0.db ?? db, args[$0.index]) }
        case (.blocking(let plan), let args)?:
            transactionWrites += plan.written.map { TierKey(db: $0.db ?? db, args[$0.index]) }
        default:
            break
        }
    }

    /// `SCRIPT LOAD body`: the body is remembered, so an EVALSHA of it is judged by its flags.
    func noticeScriptLoad(_ frame: RequestFrame, at offset: Int) {
        guard let access = worker.tierAccess, frame.argc == 3, argument(frame, 1, at: offset).lowercased() == "load" else { return }
        access.core.scripts.loaded(argumentBytes(frame, 2, at: offset))
    }

    /// `FUNCTION LOAD | DELETE | FLUSH | RESTORE`: once it has answered, the functions' flags
    /// are read again from hot (`FunctionFlags`).
    func noticeFunctionChange(_ frame: RequestFrame, at offset: Int) {
        guard sequenced, nextHandler == nil, let access = worker.tierAccess,
              FunctionFlags.isRefreshing(arguments(frame, at: offset)) else { return }
        let hot: HotClient = worker.hot
        nextHandler = { [unowned self] reply, slot in
            fill(slot, reply)
            if !ReplyParts.isError(reply) { FunctionFlags.refresh(hot: hot, scripts: access.core.scripts) }
        }
    }
}
