import Reactor

/// A tier that several event loops share (the embedded SQLite and directory tiers: one file,
/// one worker thread, every loop). Each call names the loop its completion runs on.
/// `tier(for:)` gives the `Tier` view the cascade on one loop uses.
public protocol SharedTier: AnyObject {
    var name: String { get }
    func get(_ keys: [TierKey], on loop: EventLoop, _ done: @escaping ([Result<Entry?, TierError>]) -> Void)
    func put(_ items: [(TierKey, Entry)], on loop: EventLoop, _ done: @escaping ([Result<Void, TierError>]) -> Void)
    func delete(_ keys: [TierKey], on loop: EventLoop, _ done: @escaping ([Result<Void, TierError>]) -> Void)
    /// Deletes every entry of database `db` (nil: of every database); completes with how many were deleted.
    func purge(db: Int?, on loop: EventLoop, _ done: @escaping (Result<Int, TierError>) -> Void)
    func check(on loop: EventLoop, _ done: @escaping (Result<String, TierError>) -> Void)
    /// `Tier.list`, completing on `loop`.
    func list(db: Int, after: String?, limit: Int, on loop: EventLoop, _ done: @escaping (Result<KeyPage, TierError>) -> Void)
    /// `Tier.mayHold`.
    func mayHold(_ key: TierKey) -> Bool
}

extension SharedTier {
    public func mayHold(_ key: TierKey) -> Bool { true }

    /// The `Tier` whose completions run on `loop`. Cheap; make one per loop and keep it.
    public func tier(for loop: EventLoop) -> Tier { LoopBoundTier(shared: self, loop: loop) }
}

/// A shared tier seen from one loop: single calls become batches of one.
final class LoopBoundTier: Tier {
    let shared: SharedTier
    let loop: EventLoop

    init(shared: SharedTier, loop: EventLoop) {
        self.shared = shared
        self.loop = loop
    }

    var name: String { shared.name }

    func get(_ key: TierKey, _ done: @escaping (Result<Entry?, TierError>) -> Void) {
        shared.get([key], on: loop) { done($0[0]) }
    }

    func put(_ key: TierKey, _ entry: Entry, _ done: @escaping (Result<Void, TierError>) -> Void) {
        shared.put([(key, entry)], on: loop) { done($0[0]) }
    }

    func delete(_ key: TierKey, _ done: @escaping (Result<Void, TierError>) -> Void) {
        shared.delete([key], on: loop) { done($0[0]) }
    }

    func getMany(_ keys: [TierKey], _ done: @escaping ([Result<Entry?, TierError>]) -> Void) {
        shared.get(keys, on: loop, done)
    }

    func putMany(_ items: [(TierKey, Entry)], _ done: @escaping ([Result<Void, TierError>]) -> Void) {
        shared.put(items, on: loop, done)
    }

    func deleteMany(_ keys: [TierKey], _ done: @escaping ([Result<Void, TierError>]) -> Void) {
        shared.delete(keys, on: loop, done)
    }

    func purge(db: Int?, _ done: @escaping (Result<Int, TierError>) -> Void) {
        shared.purge(db: db, on: loop, done)
    }

    func check(_ done: @escaping (Result<String, TierError>) -> Void) {
        shared.check(on: loop, done)
    }

    func list(db: Int, after: String?, limit: Int, _ done: @escaping (Result<KeyPage, TierError>) -> Void) {
        shared.list(db: db, after: after, limit: limit, on: loop, done)
    }

    func mayHold(_ key: TierKey) -> Bool { shared.mayHold(key) }
}
