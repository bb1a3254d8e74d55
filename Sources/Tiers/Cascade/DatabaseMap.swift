import Glibc
import Synchronization

/// Which database of the lower tiers holds each Redis database (docs/semantics.md "Databases").
/// Without a `SWAPDB` it is the identity. `SWAPDB a b` on hot swaps two databases at once, and
/// the lower tiers follow by swapping two entries here instead of rewriting every entry they
/// hold: what they store as database a is from then on what clients see as database b.
///
/// Kept in a small file beside the key log (`<dir>/tierproxy-dbmap`, one `logical physical`
/// pair per line for each database that is not itself), replaced atomically (temp file, fsync,
/// rename). Shared by every loop.
public final class DatabaseMap: @unchecked Sendable {
    public let path: String
    private let map = Mutex<[Int: Int]>([:])

    public init(path: String) throws(TierError) {
        self.path = path
        guard let text = try FileOps.readFile(path) else { return }
        var m: [Int: Int] = [:]
        for line in String(decoding: text, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: " ").compactMap { Int($0) }
            guard parts.count == 2, parts[0] >= 0, parts[1] >= 0 else {
                throw .corrupt("\(path): unreadable line '\(line)'")
            }
            m[parts[0]] = parts[1]
        }
        guard Set(m.keys) == Set(m.values) else { throw .corrupt("\(path): not a permutation of databases") }
        map.withLock { $0 = m }
    }

    /// The lower tiers' database for Redis database `db`.
    public func physical(_ db: Int) -> Int { map.withLock { $0[db] ?? db } }

    public func physical(_ key: TierKey) -> TierKey {
        let p = physical(key.db)
        return p == key.db ? key : TierKey(db: p, key.bytes)
    }

    /// Redis databases `a` and `b` were swapped on hot: swap where the lower tiers keep them,
    /// durably, before this returns.
    public func swap(_ a: Int, _ b: Int) throws(TierError) {
        var next = map.withLock { $0 }
        let pa = next[a] ?? a, pb = next[b] ?? b
        next[a] = pb
        next[b] = pa
        next = next.filter { $0.key != $0.value }
        let text = next.keys.sorted().map { "\($0) \(next[$0]!)\n" }.joined()
        try FileOps.writeAtomically(path, Array(text.utf8), sync: .full)
        map.withLock { $0 = next }
    }
}
