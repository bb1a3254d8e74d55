import Reactor
import Synchronization

/// Single-flight lookups across loops (docs/semantics.md §1): concurrent misses of one key, from
/// any loop, share one lower-tier lookup. The first asker starts it; later askers register and are
/// completed on their own loop when it finishes. Every asker's `done` runs exactly once, on the
/// loop it named, with the lookup's result or its error.
///
/// An asker joins a lookup only if it carries the same `KeyGeneration` the lookup started with:
/// a lookup that began before a write must not answer a request that arrived after it. Askers with
/// a newer generation start a new lookup, which later askers then join; the older one still
/// answers its own askers.
///
/// At most `maxKeys` keys are shared at once: beyond that, a lookup runs for its asker alone
/// (correct, only less shared), so the table cannot grow without bound under a miss storm over
/// many keys.
public final class LookupFlights<Value>: @unchecked Sendable {
    private let maxKeys: Int
    private let state = Mutex<[TierKey: Flight<Value>]>([:])

    public init(maxKeys: Int = 65_536) { self.maxKeys = maxKeys }

    /// Answers `done` on `loop` with the result of a lookup of `key` at `generation`: joins the one
    /// in flight, or calls `start` at once, on the calling thread, with the function that finishes
    /// the lookup for every asker (call it once, from any thread). Returns true if `start` ran.
    @discardableResult
    public func lookup(_ key: TierKey, generation: KeyGeneration, on loop: EventLoop,
                       start: (_ finish: @escaping (Result<Value, TierError>) -> Void) -> Void,
                       done: @escaping (Result<Value, TierError>) -> Void) -> Bool {
        let waiter = Waiter(loop: loop, done: done)
        let leader: Flight<Value>? = state.withLock { flights in
            if let flight = flights[key], flight.generation == generation {
                flight.waiters.append(waiter)
                return nil
            }
            let flight = Flight<Value>(generation: generation, first: waiter)
            if flights.count < maxKeys || flights[key] != nil { flights[key] = flight }
            return flight
        }
        guard let flight = leader else { return false }
        start { [self] result in finish(flight, key, result) }
        return true
    }

    /// Keys with a shared lookup in flight (for stats and tests).
    public var inFlight: Int { state.withLock { $0.count } }

    /// Askers waiting on `key`'s current shared lookup (for tests).
    public func waiters(for key: TierKey) -> Int { state.withLock { $0[key]?.waiters.count ?? 0 } }

    private func finish(_ flight: Flight<Value>, _ key: TierKey, _ result: Result<Value, TierError>) {
        let waiters: [Waiter<Value>] = state.withLock { flights in
            if flights[key] === flight { flights[key] = nil }
            let w = flight.waiters
            flight.waiters = []   // a second finish delivers to nobody
            return w
        }
        var batch = CompletionBatch()
        for w in waiters { batch.add(w.loop) { w.done(result) } }
        batch.deliver()
    }
}

/// One lookup in flight and everyone waiting for it; touched only under the flights' lock.
private final class Flight<Value> {
    let generation: KeyGeneration
    var waiters: [Waiter<Value>]

    init(generation: KeyGeneration, first: Waiter<Value>) {
        self.generation = generation
        self.waiters = [first]
    }
}

private struct Waiter<Value> {
    let loop: EventLoop
    let done: (Result<Value, TierError>) -> Void
}
