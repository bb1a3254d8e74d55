import Tiers

/// A client's own MULTI … EXEC runs on hot as Redis queues it: the proxy cannot wrap commands
/// that are already inside a transaction. Once EXEC has run, each key its tiered writes touched
/// is recorded in the durable key log, so the write-behind flusher copies the state hot holds
/// then to the lower tiers (or deletes them there); EXEC's reply goes out once that record is
/// durable. Reads inside a transaction see hot only.
enum TransactionSync {
    static func run(_ keys: [TierKey], execReply: [UInt8], access: TierAccess, then answer: @escaping () -> Void) {
        // A null or error EXEC ran nothing (WATCH, EXECABORT).
        record(keys, ran: ReplyParts.elements(execReply) != nil, access: access, then: answer)
    }

    /// Records `keys` as written (`ran`: the command did run) in the key log, then answers.
    static func record(_ keys: [TierKey], ran: Bool, access: TierAccess, then answer: @escaping () -> Void) {
        let core = access.core
        let tiered = Array(Set(keys.filter(core.isTiered)))
        guard core.keyLog != nil, ran, !tiered.isEmpty else { answer(); return }
        var remaining = tiered.count
        for key in tiered {
            core.generations.bump(key)
            // State unknown: an older captured state must not be flushed instead.
            core.mark(key, .dirty, nil, on: access.loop) { result in
                if case .failure(let e) = result { Log.warning("A key written in a transaction could not be recorded: \(e)") }
                remaining -= 1
                if remaining == 0 { answer() }
            }
        }
    }
}
