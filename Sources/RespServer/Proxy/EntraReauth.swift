/// Re-authenticating live upstream connections with a new Entra ID token, without a client ever
/// seeing it. Azure Cache for Redis / Azure Managed Redis want a fresh `AUTH` before the token a
/// connection authenticated with expires, or they end the connection.
///
/// - The shared connection and the proxy's own: the `AUTH` goes in its place among the requests
///   and its reply is read by the proxy (`SharedUpstream.reauthenticate`, `HotClient`).
/// - A pinned client's connection: only while nothing could be disturbed (`idleForReauth`: no
///   reply owed, so no blocking command waits; no `MULTI`; no subscription or MONITOR), else
///   once it becomes idle; sent like a tiered command's own request, its reply shown to no one.
///   A connection whose client chose its own user (`AUTH`, `HELLO … AUTH`) keeps that user.
enum EntraReauth {
    /// Every connection of `worker`'s loop, now or when idle.
    static func renew(_ worker: Worker, _ auth: [[UInt8]], sessions: [ClientSession]) {
        worker.shared.reauthenticate(auth)
        worker.hot.reauthenticate(auth)
        let probe = worker.watchProbe
        // Between a guard's WATCH and its EXEC an AUTH would be queued: wait for the probe's turn.
        probe.acquire {
            probe.hot.reauthenticate(auth)
            probe.release()
        }
        var waiting = 0
        for s in sessions where s.dedicated != nil && !s.isClosed {
            s.reauthOwed = auth
            sendIfIdle(s)
            if s.reauthOwed != nil { waiting += 1 }
        }
        if worker.index == 0 || waiting > 0 {
            Log.verbose("Upstream token renewed on loop \(worker.index): re-authenticating its connections"
                        + (waiting > 0 ? " (\(waiting) pinned waiting until idle)" : ""))
        }
    }

    /// Sends the owed `AUTH` on `session`'s pinned connection if it is idle now.
    static func sendIfIdle(_ session: ClientSession) {
        guard let auth = session.reauthOwed, session.idleForReauth else { return }
        session.reauthOwed = nil
        session.sendComposed([auth]) { replies, slot in
            checkReply(replies.first ?? [], on: "a client's upstream connection")
            session.fill(slot, [])
        }
    }

    /// Logs a refused re-AUTH (the reply's first line; it never holds the token).
    static func checkReply(_ reply: [UInt8], on what: String) {
        guard reply.first == UInt8(ascii: "-") else { return }
        let line = String(decoding: reply.dropFirst().prefix(200), as: UTF8.self)
            .split(whereSeparator: { $0 == "\r" || $0 == "\n" }).first ?? ""
        Log.warning("Upstream refused re-authentication on \(what): \(line)")
    }
}
