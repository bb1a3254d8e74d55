import Tiers

/// How a written key's state is read from hot, right after the command that wrote it
/// (docs/semantics.md §13: every type is tiered). Strings are stored below as their bytes
/// (portable, and what read-through answers `GET` with); every other type as its `DUMP`
/// payload, which `RESTORE` brings back exactly (fields, members, scores, a stream's entries,
/// consumer groups and pending entries). A string command leaves a string or nothing, so `GET`
/// reads it; any other command reads `DUMP`, and a string it finds there is decoded from the
/// payload (`DumpPayload.string`).
enum KeyCapture: Equatable {
    /// `GET`, `PTTL`.
    case string
    /// `DUMP`, `PTTL`.
    case dump

    /// The commands that read `key`, in order (always two).
    func commands(_ key: [UInt8]) -> [[[UInt8]]] {
        [[Array((self == .string ? "GET" : "DUMP").utf8), key], [Array("PTTL".utf8), key]]
    }

    /// The key's state from the replies to `commands`, read at `now`. Nil when a string
    /// command's `GET` found another type: the command left that key as it was (`SET … NX` of a
    /// list, say: every string command that changes a key leaves a string or nothing), so what
    /// is below stays.
    func state(_ read: ArraySlice<UInt8>, _ pttl: ArraySlice<UInt8>, now: Int64) -> KeyState? {
        guard self == .string else { return KeyCapture.dumped(read, pttl, now: now) }
        if read.starts(with: Array("-WRONGTYPE".utf8)) { return nil }
        guard let expiry = KeyCapture.expiry(pttl, now: now), case .some(.some(let value)) = ReplyParts.bulk(read) else {
            return .absent
        }
        return .value(value, type: .string, expiresAtMillis: expiry)
    }

    /// The state `DUMP` and `PTTL` replies describe, read at `now`.
    static func dumped(_ dump: ArraySlice<UInt8>, _ pttl: ArraySlice<UInt8>, now: Int64) -> KeyState {
        guard let expiry = expiry(pttl, now: now), case .some(.some(let payload)) = ReplyParts.bulk(dump) else {
            return .absent
        }
        switch DumpPayload.type(payload) {
        case .string?:
            guard let value = DumpPayload.string(payload) else {
                // Not an RDB string this decoder knows: hot keeps it, no older copy stays below.
                Log.warning("A string's DUMP payload could not be decoded; it is kept in hot only")
                return .absent
            }
            return .value(value, type: .string, expiresAtMillis: expiry)
        case let type?:
            return .value(payload, type: type, expiresAtMillis: expiry)
        case nil:
            // A module's type: hot only. Absent below, so no older copy there comes back.
            return .absent
        }
    }

    /// PTTL's answer as an absolute expiry: .some(nil) for none, nil for a key that is gone.
    /// A `PTTL` reply read at `now`: nil if the key is absent, `.some(nil)` if it has no expiry.
    static func expiry(_ pttl: ArraySlice<UInt8>, now: Int64) -> Int64?? {
        guard let ms = ReplyParts.integer(pttl), ms != -2 else { return nil }
        return .some(ms >= 0 ? now + Int64(ms) : nil)
    }

    /// An error other than WRONGTYPE (a string command's read of another type): hot did not
    /// say what the key holds.
    static func unanswered(_ reply: ArraySlice<UInt8>) -> Bool {
        ReplyParts.isError(reply) && !reply.starts(with: Array("-WRONGTYPE".utf8))
    }
}
