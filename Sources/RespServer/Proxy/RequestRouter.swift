import RESP

/// What the router needs to know about one request. The session finds these facts (they need
/// its arguments, the command table, the tiering rules, the proxy-auth gate); the router only
/// weighs them, so every routing decision can be tested without a socket.
struct RequestFacts {
    /// `*0`, `*-1` or a blank inline line: Redis ignores it and sends no reply.
    var isEmpty = false
    var isQuit = false
    /// The proxy's own `TIERS` command.
    var isTiers = false
    /// The auth-mode proxy's verdict on it (`.pass` when the proxy does not authenticate clients).
    var gate = GateVerdict.pass
    /// It touches no connection state (`Worker.canShare`): it may go on the shared connection.
    var mayShare = false
    /// What the tiering code still has to do for it, once the ways that let it travel as it is
    /// (a blind write pipelined, a blocking command with nothing to bring up) were ruled out.
    var tiered = TieredNeed.none
    /// Its tiered route takes key locks (before those ways were looked at): it may pass folded
    /// commands still in doubt (`KeyedOp+Fold`).
    var takesKeyLocks = false
    /// `SYNC`/`PSYNC`: perhaps a replica link from here on.
    var startsReplication = false
    /// The `EXEC` of the client's own transaction that wrote tiered keys (`ExecCapture`).
    var capturesExec = false
}

/// `AuthVerdict` as far as routing goes; the bytes it carries stay with the session, so that
/// the facts and the action stay plain values (no reference counting per request).
enum GateVerdict: Equatable {
    case pass
    case reset
    /// Forward the bytes the gate gave instead.
    case rewrite
    /// Answer with the bytes the gate gave.
    case answer(endsTransaction: Bool)
}

/// Whether a request is run by the tiering code, and if so whether it may start while earlier
/// replies are still owed (`ClientSession.mayOverlap`).
enum TieredNeed: Equatable {
    case none
    case run(mayOverlap: Bool)
}

/// The session's state as far as routing is concerned.
struct SessionMode {
    /// Replies come one per request (not after SUBSCRIBE, MONITOR, CLIENT REPLY, a pipe).
    var sequenced = true
    /// The client has an upstream connection of its own.
    var pinned = false
    /// Shared requests whose replies have not come back yet, those about to be sent included.
    var sharedInFlight = 0
    /// Every reply asked for before this request has reached the client's output.
    var allAnswered = true
    /// A folded command may have run on a key hot had lost (`ClientSession.foldsInDoubt`).
    var foldsInDoubt = false
}

/// What the session does with one request.
enum RequestAction: Equatable {
    /// Sequenced: an empty request is dropped (no reply either way).
    case dropEmpty
    /// Uncounted: forwarded all the same, since Redis ends a `CLIENT REPLY SKIP` on it.
    case passEmpty
    /// `QUIT`: `+OK` after the replies owed, then the close; nothing after it is read.
    case quit
    /// The auth gate rewrote it: the gate's bytes are parsed in its place.
    case rewrite
    /// The auth gate answers it in its place; a refused `EXEC` ends the transaction upstream.
    case answer(endsTransaction: Bool)
    /// `TIERS`: answered by the proxy in its place among the replies.
    case answerTiers
    /// Takes no key lock while a folded command is in doubt: it waits for every earlier reply.
    case waitBehindFolds
    /// Goes on the shared connection, pipelined with the requests before it.
    case forwardShared
    /// Needs a connection of its own, but shared replies are still owed: wait for them first.
    case waitToPin
    /// Needs a connection of its own and nothing shared is owed: pin now, then route it again.
    case pin
    /// Tiered, and must follow every earlier reply (its bring-up, its db): wait for them.
    case waitForBarrier
    /// Tiered: the tiering code runs it while later requests wait in the input.
    case runTiered
    /// `SYNC`/`PSYNC` with replies still owed: those are framed first.
    case waitBeforeReplication
    /// Forwarded on the client's own connection. `reauthenticate`: the proxy's AUTH follows
    /// (RESET under auth mode); `replication`: the answer's first byte decides whether a pipe
    /// follows, so nothing more is read until it has come.
    case forward(reauthenticate: Bool, replication: Bool)
    /// The transaction's `EXEC`, with the states it leaves its tiered keys in read inside it.
    case runExec

    /// The request goes out with the ones before it, in one write: nothing else happens first.
    var joinsBatch: Bool {
        switch self {
        case .passEmpty, .forwardShared, .forward(reauthenticate: false, replication: false): return true
        default: return false
        }
    }

    /// The request is on its way to Redis (or to the tiering code): what the session notices of
    /// requests it sends (SCRIPT LOAD, WATCH, AUTH …) is noted.
    var headsUpstream: Bool {
        switch self {
        case .dropEmpty, .passEmpty, .quit, .rewrite, .answer, .answerTiers, .waitBehindFolds: return false
        default: return true
        }
    }
}

/// Routes a request: from its facts and the session's mode to what the session does with it.
/// A pure function; the order of its questions is the order of precedence.
enum RequestRouter {
    static func route(_ r: RequestFacts, in m: SessionMode) -> RequestAction {
        if r.isEmpty { return m.sequenced ? .dropEmpty : .passEmpty }
        // Uncounted, QUIT goes to Redis, which answers it (or not) and closes.
        if r.isQuit && m.sequenced { return .quit }
        switch r.gate {
        case .rewrite: return .rewrite
        case .answer(let endsTransaction): return .answer(endsTransaction: endsTransaction)
        case .pass, .reset: break
        }
        if r.isTiers && m.sequenced { return .answerTiers }
        if m.foldsInDoubt && !r.takesKeyLocks { return .waitBehindFolds }
        if !m.pinned {
            // A client with many shared requests in flight is pinned instead: its own connection
            // lets TCP, and Redis's buffers, hold what it has not read yet.
            if r.mayShare && r.tiered == .none && m.sharedInFlight < Worker.maxSharedInFlight { return .forwardShared }
            // A tiered command that may share runs on the shared route (it waits for every
            // earlier reply anyway); anything else pins the client, once its shared replies are in.
            if r.tiered == .none || !r.mayShare { return m.sharedInFlight > 0 ? .waitToPin : .pin }
        }
        if case .run(let mayOverlap) = r.tiered {
            return m.allAnswered || mayOverlap ? .runTiered : .waitForBarrier
        }
        let replication = r.startsReplication && m.sequenced
        if replication && !m.allAnswered { return .waitBeforeReplication }
        if r.capturesExec && m.sequenced { return .runExec }
        if case .reset = r.gate { return .forward(reauthenticate: true, replication: replication) }
        return .forward(reauthenticate: false, replication: replication)
    }
}
