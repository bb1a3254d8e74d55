import Glibc
import Synchronization
import Tiers

/// The cursor a SCAN through the proxy answers (docs/semantics.md "Keyspace commands"): one
/// decimal unsigned 64-bit number, as every client expects, that says which phase the scan is in.
///
///     bit 63 = 0   hot phase: bits 40...62 the second the scan began (Unix time mod 2^23),
///                  bits 0...39 hot's own cursor (Redis's is below its table size, far under 2^40)
///     bit 63 = 1   lower phase: a ticket in `ScanTickets`, which holds the lower tier being
///                  listed and that tier's continuation (a SQLite key, a Blob marker, a Cosmos
///                  token: too long for 63 bits)
///
/// "0" starts a scan, and a full iteration ends with "0", as in Redis.
enum ScanCursor: Equatable {
    /// `began`: the scan's start second (mod 2^23); `hot`: the cursor to send to hot.
    case hot(began: UInt64, hot: UInt64)
    case lower(ticket: UInt64)

    static let lowerBit: UInt64 = 1 << 63
    static let hotBits: UInt64 = 40
    static let stampMask: UInt64 = (1 << 23) - 1

    /// The cursor argument as Redis reads it (`strtoul`, base 10, nothing after the digits:
    /// "" is 0); nil is Redis's `ERR invalid cursor`.
    static func parse(_ arg: [UInt8]) -> ScanCursor? {
        var n: UInt64 = 0
        for c in arg {
            guard c >= 0x30 && c <= 0x39 else { return nil }
            let (times, o1) = n.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times.addingReportingOverflow(UInt64(c - 0x30))
            guard !o1 && !o2 else { return nil }
            n = sum
        }
        if n & lowerBit != 0 { return .lower(ticket: n & ~lowerBit) }
        if n == 0 { return .hot(began: nowStamp(), hot: 0) }
        return .hot(began: n >> hotBits & stampMask, hot: n & ((1 << hotBits) - 1))
    }

    var value: UInt64 {
        switch self {
        case .hot(let began, let hot): return (began & Self.stampMask) << Self.hotBits | hot
        case .lower(let ticket): return Self.lowerBit | ticket
        }
    }

    /// This second, mod 2^23 (97 days: a scan older than that mistakes when it began).
    static func nowStamp() -> UInt64 { UInt64(wallClockMillis() / 1000) & stampMask }

    /// Whole seconds since the scan's stamp.
    static func elapsedSeconds(since stamp: UInt64) -> Int64 { Int64((nowStamp() &- stamp) & stampMask) }
}

/// Where a lower-phase SCAN stands: which lower tier (0: the first of warm, cold) and that
/// tier's continuation (nil: its start), and when the scan began (nil: not known, after a restart).
struct ScanTicket {
    var tier: Int
    var continuation: String?
    var began: UInt64?
}

/// The proxy-side table of lower-phase cursors, shared by every loop. Bounded: it keeps the
/// newest `capacity` tickets, each for `lifetimeMillis` after it was issued. A ticket never
/// changes, so a client may send one cursor again (a retry after an error or a timeout) and
/// get the same page. A ticket that is not here (expired, evicted, or issued by an earlier
/// process: each process numbers its tickets from a random base) restarts the lower phase from
/// its start: keys come again, but none is missed.
final class ScanTickets: @unchecked Sendable {
    static let shared = ScanTickets()

    let capacity: Int
    let lifetimeMillis: Int64
    private struct State {
        var tickets: [UInt64: (ticket: ScanTicket, issued: Int64)] = [:]
        var order: [UInt64] = []
        var head = 0
        var next: UInt64
    }
    private let state: Mutex<State>

    init(capacity: Int = 100_000, lifetimeMillis: Int64 = 3_600_000) {
        self.capacity = capacity
        self.lifetimeMillis = lifetimeMillis
        // A random base, so a restarted proxy does not read another process's ticket numbers.
        let base = UInt64(UInt32.random(in: 1...UInt32.max)) << 31
        state = Mutex(State(next: base & ~ScanCursor.lowerBit))
    }

    func issue(_ ticket: ScanTicket) -> UInt64 {
        let now = wallClockMillis()
        return state.withLock { s in
            while s.head < s.order.count, s.tickets.count >= capacity
                    || s.tickets[s.order[s.head]].map({ now - $0.issued >= lifetimeMillis }) ?? true {
                s.tickets[s.order[s.head]] = nil
                s.head += 1
            }
            if s.head > 4096 && s.head * 2 > s.order.count {
                s.order.removeFirst(s.head)
                s.head = 0
            }
            let id = s.next
            s.next = (s.next + 1) & ~ScanCursor.lowerBit
            s.tickets[id] = (ticket, now)
            s.order.append(id)
            return id
        }
    }

    /// The ticket, or nil if this process does not hold it (any more).
    func ticket(_ id: UInt64) -> ScanTicket? {
        let now = wallClockMillis()
        return state.withLock { s in
            guard let t = s.tickets[id], now - t.issued < lifetimeMillis else { return nil }
            return t.ticket
        }
    }

    var count: Int { state.withLock { $0.tickets.count } }
}
