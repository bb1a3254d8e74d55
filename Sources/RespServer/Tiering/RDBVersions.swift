import Synchronization
import Tiers

/// Which RDB versions of `DUMP` payloads hot can `RESTORE` (docs/semantics.md §13 "Versions").
/// A payload from a newer Redis than hot (hot swapped for an older one) is refused by `RESTORE`,
/// and inside the proxy's `MULTI` that refusal would not stop the command after it: a write
/// would run on a missing key and its result replace the newer copy below. So a copy found below
/// is checked before anything promotes it: each RDB version once per process, by asking hot
/// itself with `RESTORE key 1 payload ABSTTL` of a key hot lacks (Redis verifies the version
/// and checksum, then, the expiry being long past, creates nothing and answers `OK`).
final class RDBVersions: @unchecked Sendable {
    private let verdicts = Mutex<[Int: Bool]>([:])

    /// True or false once hot answered for `version`; nil while it has not.
    func restorable(_ version: Int) -> Bool? { verdicts.withLock { $0[version] } }

    /// Checks `found` (a lookup's copy of `key`) with hot, on `hot` (its connection in `homeDB`),
    /// unless its version is known already: `done` gets the copy, or why hot cannot take it.
    func check(_ key: TierKey, _ found: Found, hot: HotClient?, homeDB: Int,
               _ done: @escaping (Result<Found?, TierError>) -> Void) {
        guard found.entry.type != .string, let version = DumpPayload.rdbVersion(found.entry.value) else {
            done(.success(found))
            return
        }
        switch restorable(version) {
        case true?: done(.success(found))
        case false?: done(.failure(RDBVersions.refusal(version)))
        case nil:
            guard let hot else { done(.success(found)); return }
            var batch = DBBatch(home: homeDB)
            batch.add([Array("RESTORE".utf8), key.bytes, Array("1".utf8), found.entry.value, Array("ABSTTL".utf8)], db: key.db)
            hot.send(batch.finish()) { [self] replies in
                let reply = batch.ours(replies).first ?? []
                if reply.starts(with: Array("+OK".utf8)) {
                    verdicts.withLock { $0[version] = true }
                } else if reply.starts(with: Array(RDBVersions.refused.utf8)) {
                    verdicts.withLock { $0[version] = false }
                    done(.failure(RDBVersions.refusal(version)))
                    return
                }
                // Anything else (BUSYKEY, OOM, NOPERM) says nothing of the version: RESTORE judges.
                done(.success(found))
            }
        }
    }

    /// What `RESTORE` answers a payload of a newer RDB version (or a wrong checksum).
    private static let refused = "-ERR DUMP payload version or checksum are wrong"

    static func refusal(_ version: Int) -> TierError {
        .failed("the copy below is a DUMP payload of RDB version \(version), which hot cannot RESTORE "
                + "(\"DUMP payload version or checksum are wrong\": it was written by a newer Redis); "
                + "it stays below untouched until a write replaces it")
    }
}
