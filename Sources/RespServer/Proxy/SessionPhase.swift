/// Where a client session stands with the request at the front of its input. Parsing goes on
/// only in `.reading`; in every other phase one request waits there, unparsed from its first
/// byte, and the client's later bytes wait in TCP (the session does not read its socket, see
/// `ClientSession.mayRead`). Each waiting phase has one event that ends it:
///
/// | phase | entered by | left when |
/// |---|---|---|
/// | `.waitingToPin` | a request that needs a connection of its own while shared replies are owed | the last shared reply arrives: pin, parse again |
/// | `.waitingForEarlierReplies` | a tiered command that may not overlap, SYNC/PSYNC, a request behind folds in doubt, an auth-mode answer | every earlier reply is out: parse again |
/// | `.runningTiered` | a tiered command or a captured EXEC starts | it has answered, or (one that may overlap) is on its way: parse again |
///
/// What ends a session (QUIT, a protocol error, a failure, shutdown) is not a phase here: it
/// can arrive in any phase and stops reading for good (`ClientSession.readsNoMore`).
enum SessionPhase: Equatable {
    case reading
    case waitingToPin
    case waitingForEarlierReplies
    case runningTiered
}
