import RESP
import Reactor

/// Keeps one client's replies in request order while some of them are read, rewritten or made
/// by the proxy. Every request that owes a reply is counted when sent (`expect`); every reply is
/// counted when taken (`take`). A request whose reply a handler wants (a tiered command's, an
/// INFO to amend, a GET that may have to read through) has an intercept under its number: its
/// reply goes to the handler, which is given a slot in the client's reply order and must fill it
/// exactly once. Until it does, whatever comes after waits here (`held`) rather than in the
/// client's output. A handler that never fills its slot stalls its client for good: debug builds
/// check that no slot someone waits on is let go unfilled (`ReplySlot.deinit`).
///
/// The sequencer never calls a handler itself: `take` hands the handler back, so the session can
/// run it after the sequencer's own bookkeeping is done (a handler may fill at once, or close the
/// session).
struct ReplySequencer {
    /// Requests whose reply goes to a handler instead of the client, by request number.
    private var intercepts: [Intercept] = []
    /// The keys of GETs in `intercepts`, back to back (reused: a hit costs no allocation).
    private var getKeys: [UInt8] = []
    private var interceptHead = 0
    /// Output waiting behind a reply slot not yet filled; empty means replies go straight out.
    private var held: [HeldPart] = []
    /// The start of an intercepted reply still arriving.
    private var capture: Buffer?
    /// Requests sent that owe a reply, and replies taken, counted since the session began.
    private var requestsSent = 0
    private var repliesTaken = 0

    /// Nothing waits here: no reply held behind a slot, none half captured.
    var isSettled: Bool { held.isEmpty && capture == nil }
    var isHolding: Bool { !held.isEmpty }
    var isCapturing: Bool { capture != nil }
    var interceptsPending: Bool { interceptHead < intercepts.count }
    /// Replies must be taken one by one (a handler waits for one, or output is held).
    var routesEachReply: Bool { interceptsPending || !held.isEmpty || capture != nil }

    /// The next request sent owes a reply; `handler` takes it (nil: the client does).
    mutating func expect(_ handler: ReplyHandler?) {
        if let handler { intercepts.append(Intercept(seq: requestsSent, handler: handler)) }
        requestsSent += 1
    }

    /// The next request sent is a tiered GET: only a nil reply is read, by a read-through of
    /// the key `appendKey` appends. It keeps its key, no closure.
    mutating func expectGet(_ appendKey: (inout [UInt8]) -> Void) {
        let start = getKeys.count
        appendKey(&getKeys)
        intercepts.append(Intercept(seq: requestsSent, handler: nil, key: start..<getKeys.count))
        requestsSent += 1
    }

    /// `count` replies went straight to the client's output, by the caller (nothing was owed to
    /// a handler, nothing held).
    mutating func passed(_ count: Int) { repliesTaken += count }

    /// Routes one reply (or, `complete` false, its first part) from `buffer`: to `output`,
    /// behind a slot still being filled, or, once whole, back to the caller with the handler
    /// that asked for it and the slot it is to fill.
    mutating func take(from buffer: Buffer, count: Int, complete: Bool, isNull: Bool?,
                       to output: Buffer) -> (bytes: [UInt8], taker: ReplyTaker, slot: ReplySlot)? {
        if interceptsPending && intercepts[interceptHead].seq == repliesTaken && intercepts[interceptHead].handler == nil
            && capture == nil && !(isNull ?? Self.mayBeNull(buffer, count: count, complete: complete)) {
            // A GET hit: it goes out as it came, with no copy.
            dropIntercept()
        }
        if interceptsPending && intercepts[interceptHead].seq == repliesTaken {
            guard let (bytes, taker) = captureIntercepted(from: buffer, count: count, complete: complete) else { return nil }
            let slot = ReplySlot(awaited: true)
            held.append(.slot(slot))
            return (bytes, taker, slot)
        }
        if held.isEmpty {
            buffer.move(count, to: output)
        } else if case .bytes(let last)? = held.last {
            buffer.move(count, to: last)
        } else {
            let part = Buffer.make()
            buffer.move(count, to: part)
            held.append(.bytes(part))
        }
        if complete { repliesTaken += 1 }
        return nil
    }

    /// The client is gone, but a tiered command of its may still wait for replies (holding key
    /// locks, with a write to copy below): those still reach their handlers; the rest is dropped.
    mutating func takeAfterClose(from buffer: Buffer, count: Int, complete: Bool) -> ([UInt8], ReplyTaker)? {
        guard interceptsPending && intercepts[interceptHead].seq == repliesTaken else {
            buffer.drain(count)
            if complete { repliesTaken += 1 }
            return nil
        }
        return captureIntercepted(from: buffer, count: count, complete: complete)
    }

    /// A push message: not a reply to anything, so it goes out in arrival order, never to a handler.
    mutating func takeUncounted(from buffer: Buffer, count: Int, to output: Buffer) {
        if held.isEmpty { buffer.move(count, to: output); return }
        let part = Buffer.make()
        buffer.move(count, to: part)
        held.append(.bytes(part))
    }

    /// Moves to `output` what is held up to the first slot still unfilled.
    mutating func release(into output: Buffer) {
        var released = 0
        for part in held {
            switch part {
            case .bytes(let b):
                b.moveAll(to: output)
                b.free()
            case .slot(let s):
                guard let r = s.reply else { held.removeFirst(released); return }
                output.append(r)
            }
            released += 1
        }
        held.removeAll(keepingCapacity: true)
    }

    /// The replies the pending intercepts wait for can no longer come: each is handed back with
    /// a slot to fill with the error the caller gives it. `inOrder`: the slots hold their places
    /// in the client's reply order (the client is still there to read them).
    mutating func failPending(inOrder: Bool) -> [(ReplyTaker, ReplySlot)] {
        let pending = intercepts[interceptHead...].map { (taker(for: $0), ReplySlot(awaited: inOrder)) }
        intercepts.removeAll()
        getKeys.removeAll()
        interceptHead = 0
        if inOrder { for (_, slot) in pending { held.append(.slot(slot)) } }
        return pending
    }

    /// Whether a byte pipe can take over where the reply scanner failed, `counted` replies after
    /// the ones taken so far (`PipeMode.canTakeOver`).
    func pipeCanTakeOver(after counted: Int) -> Bool {
        PipeMode.canTakeOver(intercepts[interceptHead...], failedSeq: repliesTaken + counted, capturing: capture != nil)
    }

    /// The connection became a pipe: what the proxy still expected to read passes unread.
    mutating func dropIntercepts() {
        intercepts.removeAll()
        getKeys.removeAll()
        interceptHead = 0
    }

    /// The client is closed: held output is freed, and nobody waits for the held slots any more.
    mutating func discardHeld() {
        for part in held {
            switch part {
            case .bytes(let b): b.free()
            case .slot(let s): s.abandon()
            }
        }
        held.removeAll()
    }

    /// A reply half captured will not be finished (its connection is gone).
    mutating func discardCapture() {
        capture?.free()
        capture = nil
    }

    /// Collects an intercepted reply; once it is complete, returns it with its taker (and moves
    /// past that intercept).
    private mutating func captureIntercepted(from buffer: Buffer, count: Int, complete: Bool) -> ([UInt8], ReplyTaker)? {
        let bytes: [UInt8]
        if complete && capture == nil {
            // The usual case, a whole reply at once: no buffer of its own.
            bytes = buffer.copy(count)
            buffer.drain(count)
        } else {
            let c = capture ?? Buffer.make()
            capture = c
            buffer.move(count, to: c)
            guard complete else { return nil }
            bytes = c.copy(c.count)
            c.free()
            capture = nil
        }
        let taker = taker(for: intercepts[interceptHead])
        dropIntercept()
        repliesTaken += 1
        return (bytes, taker)
    }

    private func taker(for intercept: Intercept) -> ReplyTaker {
        if let h = intercept.handler { return .handler(h) }
        return .readThrough(key: Array(getKeys[intercept.key]))
    }

    /// Moves past the head intercept (its reply has been taken).
    private mutating func dropIntercept() {
        interceptHead += 1
        if interceptHead == intercepts.count {
            intercepts.removeAll(keepingCapacity: true)
            getKeys.removeAll(keepingCapacity: true)
            interceptHead = 0
        }
    }

    /// False if the reply starting at `buffer`'s front surely is not a null (`$-1`, `*-1`, `_`):
    /// a complete reply is judged by its first bytes, a partial one by its size (nulls are short).
    private static func mayBeNull(_ buffer: Buffer, count: Int, complete: Bool) -> Bool {
        if !complete { return count <= 5 }
        let head = buffer.pullup(min(count, 2))
        guard let t = head.first else { return false }
        if t == UInt8(ascii: "_") { return true }
        return (t == UInt8(ascii: "$") || t == UInt8(ascii: "*")) && head.count > 1 && head[1] == UInt8(ascii: "-")
    }
}

/// Who takes an intercepted reply: a handler, or for a tiered GET the read-through of its key.
enum ReplyTaker {
    case handler(ReplyHandler)
    case readThrough(key: [UInt8])
}

/// A reply the proxy will compose, holding its place in the client's reply order.
final class ReplySlot {
    var reply: [UInt8]?
    #if DEBUG
    /// The client waits for this slot: it must be filled before it is let go.
    private var awaited: Bool
    #endif

    /// A slot nobody waits on (the client is gone, or the reply is the proxy's own): filling
    /// it is harmless, and so is not filling it.
    convenience init() { self.init(awaited: false) }

    init(awaited: Bool) {
        #if DEBUG
        self.awaited = awaited
        #endif
    }

    /// The client closed: nobody waits for this slot any more.
    func abandon() {
        #if DEBUG
        awaited = false
        #endif
    }

    #if DEBUG
    deinit {
        assert(reply != nil || !awaited, "a reply slot was let go unfilled: its client would wait for it for good")
    }
    #endif
}

/// Takes an intercepted reply's bytes and fills the slot (now or later, on this loop).
typealias ReplyHandler = (_ reply: [UInt8], _ slot: ReplySlot) -> Void

struct Intercept {
    let seq: Int
    /// Takes the reply. nil for a tiered GET: only a nil reply is read (by `ReadThrough.get`,
    /// with the key at `key` in the sequencer's `getKeys`); any other passes straight on.
    let handler: ReplyHandler?
    var key: Range<Int> = 0..<0
}

enum HeldPart {
    case bytes(Buffer)
    case slot(ReplySlot)
}
