import Glibc
import Testing
import Reactor
@testable import Tiers

/// KeyLocks: one holder per key at a time (or one owner's writes together), waiters served in order on their own loops, several
/// keys taken without deadlock whatever order callers name them in.
@Suite struct KeyLocksTests {
    @Test func freeKeysAreGrantedAtOnceAndHeldKeysWait() throws {
        let locks = KeyLocks()
        let h = LoopHarness()
        let a = TierKey("a"), b = TierKey("b")
        var order: [Int] = []
        let granted: Bool = try h.wait("first") { done in
            var now = false
            locks.acquire([a, b], on: h.loop) { now = true }
            done(now)
        }
        #expect(granted, "free keys are taken synchronously")
        #expect(!locks.tryAcquire(a) && locks.heldCount == 2)
        let served: [Int] = try h.wait("waiters") { done in
            locks.acquire([b], on: h.loop) { order.append(1); locks.release([b]) }
            locks.acquire([a, b], on: h.loop) { order.append(2); locks.release([a, b]); done(order) }
            #expect(order.isEmpty, "held keys make later askers wait")
            locks.release([b, a])
        }
        #expect(served == [1, 2])
        #expect(locks.heldCount == 0)
    }

    @Test func oneOwnersWritesShareAKeyAndEveryoneElseWaitsForTheLast() throws {
        let locks = KeyLocks()
        let h = LoopHarness()
        let a = TierKey("a")
        final class Connection {}
        let mine = ObjectIdentifier(Connection.self), other = ObjectIdentifier(KeyLocks.self)
        #expect(locks.tryAcquire([a], sharedBy: mine))
        #expect(locks.tryAcquire([a], sharedBy: mine), "the same owner takes it again")
        #expect(!locks.tryAcquire([a], sharedBy: other), "another owner does not")
        #expect(!locks.tryAcquire(a), "nor does an exclusive taker")
        let served: Bool = try h.wait("an exclusive waiter") { done in
            var granted = false
            locks.acquire([a], on: h.loop) { granted = true; locks.release([a]); done(granted) }
            #expect(!locks.tryAcquire([a], sharedBy: mine), "once someone waits, the owner waits too")
            locks.release([a])
            #expect(!granted, "one holder is left")
            locks.release([a])
        }
        #expect(served)
        #expect(locks.heldCount == 0)
        #expect(locks.tryAcquire(a), "after an exclusive holder the key is plain again")
        #expect(!locks.tryAcquire([a], sharedBy: mine))
        locks.release([a])
    }

    @Test func opposingOrdersOnTwoLoopsNeverDeadlock() throws {
        let locks = KeyLocks()
        let loops = [LoopHarness(name: "l1"), LoopHarness(name: "l2")]
        let keys = (0..<8).map { TierKey("k\($0)") }
        let rounds = 2_000
        let done = Reactor.AtomicCounter()
        let holders = (0..<8).map { _ in Reactor.AtomicCounter() }
        let overlaps = Reactor.AtomicCounter()
        for (n, h) in loops.enumerated() {
            let mine = n == 0 ? keys : keys.reversed()
            h.loop.execute {
                func round(_ i: Int) {
                    guard i < rounds else { done.add(1); return }
                    let pick = Array(mine[(i % 4)..<(i % 4 + 4)])
                    locks.acquire(pick, on: h.loop) {
                        let slots = pick.map { k in keys.firstIndex(of: k)! }
                        for s in slots where holders[s].add(1) > 1 { overlaps.add(1) }
                        for s in slots { holders[s].add(-1) }
                        locks.release(pick)
                        h.loop.execute { round(i + 1) }
                    }
                }
                round(0)
            }
        }
        var waited = 0
        while done.value < 2 && waited < 30_000 { usleep(1000); waited += 1 }
        #expect(done.value == 2, "both loops finished \(rounds) rounds (no deadlock)")
        #expect(overlaps.value == 0, "two holders of one key at once")
        #expect(locks.heldCount == 0)
    }
}
