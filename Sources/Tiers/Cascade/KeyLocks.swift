import Reactor
import Synchronization

/// Per-key locks shared by every loop (docs/semantics.md §9): a tiered command holds its keys
/// from the moment it is sent to hot until every lower tier has its result, so the order in
/// which hot applies writes of one key is the order in which they reach the lower tiers, and a
/// promotion can never land between a write and its copy below.
///
/// Waiting is asynchronous: a waiter's continuation runs on its own loop when the key is handed
/// to it (FIFO per key). Several keys are taken one at a time in one global order (db, then
/// bytes), so two commands over the same keys can never wait for each other in a cycle.
public final class KeyLocks: @unchecked Sendable {
    private struct Waiter {
        let loop: EventLoop
        let resume: () -> Void
    }

    /// A held key: how many hold it (more than one only when shared, see `tryAcquire(_:sharedBy:)`)
    /// and who waits for it.
    private struct Held {
        var waiters: [Waiter] = []
        var holders = 1
        var sharedBy: ObjectIdentifier?
    }

    /// Held keys; a key absent here is free.
    private let state = Mutex<[TierKey: Held]>([:])

    public init() {}

    /// Takes every key of `keys` (duplicates allowed), then calls `granted`: at once on this
    /// thread if all were free, else later on `loop`. Pass the same keys to `release`.
    public func acquire(_ keys: [TierKey], on loop: EventLoop, _ granted: @escaping () -> Void) {
        let ordered = KeyLocks.ordered(keys)
        acquire(ordered, from: 0, on: loop, granted)
    }

    private func acquire(_ keys: [TierKey], from index: Int, on loop: EventLoop, _ granted: @escaping () -> Void) {
        var i = index
        while i < keys.count {
            let key = keys[i]
            let next = i + 1
            let taken: Bool = state.withLock { held in
                if held[key] == nil { held[key] = Held(); return true }
                held[key]!.waiters.append(Waiter(loop: loop) { [self] in acquire(keys, from: next, on: loop, granted) })
                return false
            }
            if !taken { return }
            i = next
        }
        granted()
    }

    /// Takes `key` only if it is free now; true if taken (release it with `release([key])`).
    public func tryAcquire(_ key: TierKey) -> Bool {
        state.withLock { held in
            if held[key] != nil { return false }
            held[key] = Held()
            return true
        }
    }

    /// Takes every one of `keys` at once if all are free (nothing otherwise); true if taken.
    public func tryAcquire(_ keys: [TierKey]) -> Bool {
        state.withLock { held in
            if keys.contains(where: { held[$0] != nil }) { return false }
            for key in keys { held[key] = Held() }
            return true
        }
    }

    /// `tryAcquire(keys)` for writes that travel on one connection to hot, `owner`: a key held
    /// only by writes of the same owner, with nobody waiting, is taken once more. Such writes
    /// reach hot and answer in the order they were sent, so their results can be applied in
    /// reply order without excluding one another; anyone else waits until the last of them
    /// lets go, and once someone waits, the owner's next write waits too.
    public func tryAcquire(_ keys: [TierKey], sharedBy owner: ObjectIdentifier) -> Bool {
        state.withLock { held in
            for key in keys {
                guard let h = held[key] else { continue }
                if h.sharedBy != owner || !h.waiters.isEmpty { return false }
            }
            for key in keys {
                if let i = held.index(forKey: key) { held.values[i].holders += 1 } else { held[key] = Held(sharedBy: owner) }
            }
            return true
        }
    }

    /// Gives back keys taken by `acquire` or `tryAcquire`; each passes to its next waiter.
    /// Release order does not matter (only taking them does), so all go under one lock.
    public func release(_ keys: [TierKey]) { release(distinct: KeyLocks.distinct(keys)) }

    /// `release` of keys the caller knows to be distinct (a flush batch): no set is built to
    /// drop repeats, and each key costs one lookup.
    public func release(distinct keys: [TierKey]) {
        let next: [Waiter] = state.withLock { held in
            var next: [Waiter] = []
            for key in keys {
                guard let i = held.index(forKey: key) else { continue }
                if held.values[i].holders > 1 { held.values[i].holders -= 1; continue }
                if held.values[i].waiters.isEmpty { held.remove(at: i); continue }
                next.append(held.values[i].waiters.removeFirst())
                held.values[i].sharedBy = nil  // the next holder has it alone
            }
            return next
        }
        for waiter in next { waiter.loop.execute(waiter.resume) }
    }

    /// Keys held now (for INFO and tests).
    public var heldCount: Int { state.withLock { $0.count } }

    /// Distinct keys in the one global order.
    public static func ordered(_ keys: [TierKey]) -> [TierKey] {
        if keys.count < 2 { return keys }
        return distinct(keys).sorted { a, b in
            a.db != b.db ? a.db < b.db : a.bytes.lexicographicallyPrecedes(b.bytes)
        }
    }

    /// `keys` without repeats, in their order.
    private static func distinct(_ keys: [TierKey]) -> [TierKey] {
        if keys.count < 2 { return keys }
        var seen = Set<TierKey>()
        return keys.filter { seen.insert($0).inserted }
    }
}
