import Reactor

/// A key as the lower tiers see it: the Redis database index and the key's raw bytes.
/// Redis keys are binary; nothing here assumes UTF-8.
public struct TierKey: Hashable, Sendable {
    public var db: Int
    public var bytes: [UInt8]
    public init(db: Int = 0, _ bytes: [UInt8]) { self.db = db; self.bytes = bytes }
    public init(db: Int = 0, _ text: String) { self.db = db; self.bytes = Array(text.utf8) }

    // Every write passes through several shared tables keyed by TierKey (locks, generations,
    // pending states): the bytes are hashed in one call, not one `combine` per byte.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(db)
        hasher.combine(bytes.count)
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    public static func == (a: TierKey, b: TierKey) -> Bool { a.db == b.db && a.bytes == b.bytes }
}

/// Why a tier operation failed. Each case carries a message a person can act on.
public enum TierError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The value is larger than this tier stores (Cosmos items: 2 MB); the cascade sends it to cold.
    case tooLarge(limit: Int)
    /// The tier could not be reached or kept failing after retries (timeouts, 5xx, resets).
    case unavailable(String)
    /// Credentials were refused (401/403) or could not be obtained.
    case unauthorized(String)
    /// The stored bytes are not a valid entry.
    case corrupt(String)
    /// Anything else the backend reported, verbatim enough to debug.
    case failed(String)

    public var description: String {
        switch self {
        case .tooLarge(let limit): return "value too large for this tier (limit \(limit) bytes)"
        case .unavailable(let m): return "tier unavailable: \(m)"
        case .unauthorized(let m): return "tier refused credentials: \(m)"
        case .corrupt(let m): return "corrupt entry: \(m)"
        case .failed(let m): return m
        }
    }
}

/// A warm or cold backend. Every method completes exactly once, on the loop the tier was made for.
/// A tier never returns an entry whose expiry has passed: it answers nil (and may delete it).
public protocol Tier: AnyObject {
    /// Short name for logs, INFO and `tiers check`, e.g. "warm sqlite:/var/lib/tierproxy/warm.db".
    var name: String { get }
    func get(_ key: TierKey, _ done: @escaping (Result<Entry?, TierError>) -> Void)
    func put(_ key: TierKey, _ entry: Entry, _ done: @escaping (Result<Void, TierError>) -> Void)
    /// Deleting an absent key succeeds.
    func delete(_ key: TierKey, _ done: @escaping (Result<Void, TierError>) -> Void)
    /// Batched forms; backends that can batch override them. Results are in the order of `keys`.
    func getMany(_ keys: [TierKey], _ done: @escaping ([Result<Entry?, TierError>]) -> Void)
    func putMany(_ items: [(TierKey, Entry)], _ done: @escaping ([Result<Void, TierError>]) -> Void)
    func deleteMany(_ keys: [TierKey], _ done: @escaping ([Result<Void, TierError>]) -> Void)
    /// Deletes every entry of database `db` (nil: of every database); completes with how many were deleted.
    func purge(db: Int?, _ done: @escaping (Result<Int, TierError>) -> Void)
    /// Up to about `limit` keys of database `db` from the position `after` (nil: the start; else a
    /// `KeyPage.next` this tier gave). Expired entries may be listed (their expiry says so).
    func list(db: Int, after: String?, limit: Int, _ done: @escaping (Result<KeyPage, TierError>) -> Void)
    /// Connects with the configured credentials and reports "ok" or what is wrong (for `tiers check`).
    func check(_ done: @escaping (Result<String, TierError>) -> Void)
    /// False only when the tier certainly holds no entry of `key` (nothing of this process has
    /// begun writing it there, and it was not there at start): a delete there can be skipped.
    /// Any thread may ask.
    func mayHold(_ key: TierKey) -> Bool
}

extension Tier {
    /// Most tiers cannot tell: every delete goes out.
    public func mayHold(_ key: TierKey) -> Bool { true }
    public func getMany(_ keys: [TierKey], _ done: @escaping ([Result<Entry?, TierError>]) -> Void) {
        fanOut(keys.count, { i, cb in self.get(keys[i], cb) }, done)
    }
    public func putMany(_ items: [(TierKey, Entry)], _ done: @escaping ([Result<Void, TierError>]) -> Void) {
        fanOut(items.count, { i, cb in self.put(items[i].0, items[i].1, cb) }, done)
    }
    public func deleteMany(_ keys: [TierKey], _ done: @escaping ([Result<Void, TierError>]) -> Void) {
        fanOut(keys.count, { i, cb in self.delete(keys[i], cb) }, done)
    }
}

/// Starts `count` operations at once and completes with their results in order.
func fanOut<T>(_ count: Int, _ start: (Int, @escaping (Result<T, TierError>) -> Void) -> Void,
               _ done: @escaping ([Result<T, TierError>]) -> Void) {
    if count == 0 { done([]); return }
    var results = [Result<T, TierError>?](repeating: nil, count: count)
    var remaining = count
    for i in 0..<count {
        start(i) { r in
            results[i] = r
            remaining -= 1
            if remaining == 0 { done(results.map { $0! }) }
        }
    }
}

extension Result {
    public var isSuccess: Bool { if case .success = self { return true } else { return false } }
    public var errorValue: Failure? { if case .failure(let e) = self { return e } else { return nil } }
}
