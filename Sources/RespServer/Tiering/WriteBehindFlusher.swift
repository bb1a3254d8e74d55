import Reactor
import Tiers

/// Drains the key log into the lower tiers from one loop (docs/semantics.md §3 and 10): each
/// pending key is flushed under its lock with the state its last write captured, or, after a
/// restart (the captured states were in memory), with the state hot holds now. A key hot no
/// longer holds then is deleted below: an older copy there must not come back.
final class WriteBehindFlusher {
    private let access: TierAccess
    private let hot: HotClient
    private let homeDB: Int
    private(set) var flusher: Flusher?

    init(access: TierAccess, hot: HotClient, homeDB: Int) {
        self.access = access
        self.hot = hot
        self.homeDB = homeDB
    }

    func start() {
        guard let log = access.core.keyLog, access.hasLowerTiers else { return }
        let f = Flusher(log: log, loop: access.loop) { [unowned self] op, key, done in flush(op, key, done) }
        flusher = f
        access.core.flusher = f
        f.start()
    }

    func stop() { flusher?.stop() }

    private func flush(_ op: KeyLog.Op, _ key: TierKey, _ done: @escaping (Result<Void, TierError>) -> Void) {
        let core = access.core
        core.locks.acquire([key], on: access.loop) { [self] in
            func write(_ state: KeyState) {
                access.store(key, state) { result in
                    if case .success = result { core.setPendingState(key, nil) }
                    core.locks.release([key])
                    done(result)
                }
            }
            if let state = core.pendingState(key) { write(state); return }
            if op == .delete { write(.absent); return }
            var batch = DBBatch(home: homeDB)
            batch.add([Array("GET".utf8), key.bytes], db: key.db)
            batch.add([Array("PTTL".utf8), key.bytes], db: key.db)
            hot.send(batch.finish()) { replies in
                let r = batch.ours(replies)
                if ReplyParts.isError(r[0]) && !r[0].starts(with: Array("-WRONGTYPE".utf8)) {
                    core.locks.release([key])
                    done(.failure(.unavailable("hot: \(String(decoding: r[0].prefix(200), as: UTF8.self))")))
                    return
                }
                write(KeyState(get: r[0], pttl: r[1], now: wallClockMillis()))
            }
        }
    }
}
