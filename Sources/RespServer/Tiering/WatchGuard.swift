import Reactor
import Tiers

/// Keeps a client's `WATCH` exact while the proxy runs its own `MULTI … EXEC` (or `DISCARD`) on
/// the client's connection (docs/semantics.md "Connection state is the client's"). Redis forgets
/// a connection's watches at every EXEC and DISCARD, so without this a tiered write between the
/// client's WATCH and its EXEC would let a conflicting transaction commit.
///
/// Redis itself decides whether a watched key changed, through a second watcher: the loop's
/// probe connection. While the proxy's transaction runs, the probe watches what the client
/// watches; afterwards the client watches its keys again, and the probe's `MULTI; PING; EXEC`
/// comes back null exactly when one of them was modified meanwhile (by the proxy's own command,
/// by anyone, by expiry or a flush). Modifications before the probe started make the proxy's own
/// EXEC null (`transactionAborted`). Either way the client's next EXEC must fail: the client
/// watches a key of the proxy's (`fireKey`) that the probe then sets and deletes inside one
/// MULTI, so no other client ever sees it.
final class WatchGuard {
    private let session: any TieredClient
    private let watched: [TierKey]
    private let probe: ProbeConnection
    private var fired = false

    /// The key a doomed transaction watches so that its EXEC fails (never visible: it is set and
    /// deleted in one transaction).
    static let fireKey = Array("tierproxy:watch-fired".utf8)

    init?(session: any TieredClient) {
        guard !session.watchedKeys.isEmpty else { return nil }
        self.session = session
        self.watched = session.watchedKeys
        self.probe = session.watchProbe
    }

    /// Before the proxy's transaction: the probe watches the client's keys.
    func arm(_ then: @escaping () -> Void) {
        probe.acquire { [self] in
            probe.hot.send(watchCommands(home: probe.homeDB)) { _ in then() }
        }
    }

    /// The proxy's own EXEC came back null: a watched key had changed before it ran.
    func transactionAborted() { fired = true }

    /// After the proxy's transaction: the client watches its keys again, and fails its next EXEC
    /// if any of them changed since its WATCH.
    func restore(_ then: @escaping () -> Void) {
        session.sendComposed(watchCommands(home: session.db)) { [self] _, slot in
            session.fill(slot, [])
            probe.hot.send([[Array("MULTI".utf8)], [Array("PING".utf8)], [Array("EXEC".utf8)]]) { [self] replies in
                if let exec = replies.last, ReplyParts.isNull(exec) || ReplyParts.isError(exec) { fired = true }
                guard fired else { probe.release(); then(); return }
                fire(then)
            }
        }
    }

    private func fire(_ then: @escaping () -> Void) {
        let db = session.db
        session.sendComposed([[Array("WATCH".utf8), WatchGuard.fireKey]]) { [self] _, slot in
            session.fill(slot, [])
            var batch = DBBatch(home: probe.homeDB)
            batch.add([Array("MULTI".utf8)], db: db)
            batch.add([Array("SET".utf8), WatchGuard.fireKey, Array("1".utf8)], db: db)
            batch.add([Array("DEL".utf8), WatchGuard.fireKey], db: db)
            batch.add([Array("EXEC".utf8)], db: db)
            probe.hot.send(batch.finish()) { [self] _ in
                probe.release()
                then()
            }
        }
    }

    /// `WATCH` of every watched key, each in its db, ending in `home`.
    private func watchCommands(home: Int) -> [[[UInt8]]] {
        var batch = DBBatch(home: home)
        for k in watched { batch.add([Array("WATCH".utf8), k.bytes], db: k.db) }
        return batch.finish()
    }
}

/// One loop's probe connection to hot, used by one `WatchGuard` at a time (its watches are its
/// state, so guards take turns).
final class ProbeConnection {
    let hot: HotClient
    let homeDB: Int
    private var busy = false
    private var waiting: [() -> Void] = []

    init(hot: HotClient, homeDB: Int) {
        self.hot = hot
        self.homeDB = homeDB
    }

    func acquire(_ then: @escaping () -> Void) {
        if busy { waiting.append(then); return }
        busy = true
        then()
    }

    func release() {
        if waiting.isEmpty { busy = false; return }
        waiting.removeFirst()()
    }
}
