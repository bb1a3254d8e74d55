import Reactor
import Tiers

/// A write whose result follows from the command and Redis's `+OK` alone (docs/semantics.md
/// "Writes"): `SET k v` with at most an expiry option, `SETEX`, `PSETEX`, `MSET`. It travels to
/// hot as the client sent it, pipelined with the client's other requests (no barrier, no
/// transaction around it), and its reply is read on the way back: `+OK` means every key now
/// holds its value with the expiry the command gave it, which then goes below per rule. The
/// keys' locks are taken before it is sent, so states of one key reach the lower tiers in the
/// order hot applied them.
struct BlindWrite {
    /// Where in the request each key and its value are.
    struct Pair: Equatable {
        var key: Int
        var value: Int
    }

    enum Expiry: Equatable {
        case none
        case relativeMillis(Int64)
        case absoluteMillis(Int64)

        func at(_ now: Int64) -> Int64? {
            switch self {
            case .none: return nil
            case .relativeMillis(let ms): return now + ms
            case .absoluteMillis(let at): return at
            }
        }
    }

    var pairs: [Pair]
    var expiry: Expiry

    /// `SET k v [EX s | PX ms | EXAT t | PXAT t]`; nil for any other shape (NX, XX, GET,
    /// KEEPTTL, a malformed time: those need what hot holds, or Redis's judgement).
    static func set(_ args: [[UInt8]]) -> BlindWrite? {
        let pair = [Pair(key: 1, value: 2)]
        if args.count == 3 { return BlindWrite(pairs: pair, expiry: .none) }
        guard args.count == 5, let n = positive(args[4]) else { return nil }
        switch String(decoding: args[3], as: UTF8.self).uppercased() {
        case "EX": return n <= Int64.max / 1000 ? BlindWrite(pairs: pair, expiry: .relativeMillis(n * 1000)) : nil
        case "PX": return BlindWrite(pairs: pair, expiry: .relativeMillis(n))
        case "EXAT": return n <= Int64.max / 1000 ? BlindWrite(pairs: pair, expiry: .absoluteMillis(n * 1000)) : nil
        case "PXAT": return BlindWrite(pairs: pair, expiry: .absoluteMillis(n))
        default: return nil
        }
    }

    /// `SETEX k s v` / `PSETEX k ms v`.
    static func setex(_ args: [[UInt8]], millis: Bool) -> BlindWrite? {
        guard args.count == 4, let n = positive(args[2]), millis || n <= Int64.max / 1000 else { return nil }
        return BlindWrite(pairs: [Pair(key: 1, value: 3)], expiry: .relativeMillis(millis ? n : n * 1000))
    }

    /// `MSET k v [k v …]`.
    static func mset(_ args: [[UInt8]]) -> BlindWrite? {
        guard args.count >= 3, args.count % 2 == 1 else { return nil }
        return BlindWrite(pairs: stride(from: 1, to: args.count, by: 2).map { Pair(key: $0, value: $0 + 1) }, expiry: .none)
    }

    private static func positive(_ bytes: [UInt8]) -> Int64? {
        guard let n = Int64(String(decoding: bytes, as: UTF8.self)), n > 0 else { return nil }
        return n
    }

    /// The state one pair of `args` leaves its key in, read at `now`.
    func state(of pair: Pair, _ args: [[UInt8]], db: Int, now: Int64) -> (TierKey, KeyState) {
        (TierKey(db: db, args[pair.key]), .value(args[pair.value], type: .string, expiresAtMillis: expiry.at(now)))
    }

    /// The states `args` leaves its keys in, read at `now`, last write of a repeated key winning.
    func states(_ args: [[UInt8]], db: Int, now: Int64) -> [(TierKey, KeyState)] {
        if pairs.count == 1 { return [state(of: pairs[0], args, db: db, now: now)] }  // no repeat to look for
        let expires = expiry.at(now)
        var out: [(TierKey, KeyState)] = []
        var seen: [TierKey: Int] = [:]
        for p in pairs {
            let key = TierKey(db: db, args[p.key])
            let state = KeyState.value(args[p.value], type: .string, expiresAtMillis: expires)
            if let i = seen[key] { out[i].1 = state } else { seen[key] = out.count; out.append((key, state)) }
        }
        return out
    }
}

/// Runs one blind write's lower-tier half: `start` takes the locks (or says it cannot), the
/// reply handler copies the states below and lets the reply out.
enum BlindWriteRun {
    private static let ok = Array("+OK".utf8)

    /// The handler for a blind write already holding `locked`'s locks.
    static func handler(_ write: BlindWrite, _ args: [[UInt8]], db: Int, locked: [TierKey], access: TierAccess,
                        hot: HotClient, homeDB: Int, fill: @escaping (ReplySlot, [UInt8]) -> Void) -> ReplyHandler {
        return { reply, slot in
            let core = access.core
            guard reply.starts(with: ok) else {
                core.locks.release(locked)
                fill(slot, reply)
                return
            }
            // `locked` holds the tiered keys: none, nothing goes below.
            if locked.isEmpty { fill(slot, reply); return }
            if write.pairs.count == 1 {
                let (key, state) = write.state(of: write.pairs[0], args, db: db, now: wallClockMillis())
                core.generations.bump(key)
                if LowerWrite.applyAtOnce(key, state, access: access) {  // write-behind: no closures
                    core.generations.bump(key)
                    core.locks.release(locked)
                    fill(slot, reply)
                    return
                }
                applyOne(key, state, locked: locked, access: access, hot: hot, homeDB: homeDB) { fill(slot, $0 ?? reply) }
                return
            }
            let states = write.states(args, db: db, now: wallClockMillis()).filter { core.isTiered($0.0) }
            for (k, _) in states { core.generations.bump(k) }
            var remaining = states.count
            var unordered = states.count
            var failed: [(TierKey, TierError)] = []
            if remaining == 0 { core.locks.release(locked); fill(slot, reply); return }
            // The locks go once every state has its place (write-behind: when it is the pending
            // state, before its record is durable), so the next write of a key need not wait
            // for this one's fdatasync.
            func ordered() {
                unordered -= 1
                guard unordered == 0 else { return }
                for (k, _) in states { core.generations.bump(k) }
                core.locks.release(locked)
            }
            for (key, state) in states {
                LowerWrite.apply(key, state, access: access, ordered: ordered) { result in
                    if case .failure(let e) = result { failed.append((key, e)) }
                    remaining -= 1
                    guard remaining == 0 else { return }
                    guard let (_, error) = failed.first else { fill(slot, reply); return }
                    LowerWrite.removeEverywhere(failed.map { $0.0 }, access: access, hot: hot, homeDB: homeDB) {
                        fill(slot, notTaken(error))
                    }
                }
            }
        }
    }

    /// One key's state below (SET, SETEX, PSETEX: most blind writes), without the bookkeeping
    /// of many: `done` gets nil for "let hot's reply out", else the error reply to send instead.
    private static func applyOne(_ key: TierKey, _ state: KeyState, locked: [TierKey], access: TierAccess, hot: HotClient,
                                 homeDB: Int, _ done: @escaping ([UInt8]?) -> Void) {
        let core = access.core
        LowerWrite.apply(key, state, access: access, ordered: {
            core.generations.bump(key)
            core.locks.release(locked)
        }) { result in
            guard case .failure(let error) = result else { done(nil); return }
            LowerWrite.removeEverywhere([key], access: access, hot: hot, homeDB: homeDB) { done(notTaken(error)) }
        }
    }

    private static func notTaken(_ error: TierError) -> [UInt8] {
        ReplyParts.errorReply("ERR tierproxy: the lower tier did not take the write, so the key was removed from every tier: \(error)")
    }
}
