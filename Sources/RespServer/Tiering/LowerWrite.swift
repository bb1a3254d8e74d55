import Reactor
import Tiers

/// How one key's new state reaches the lower tiers, per its rule (docs/semantics.md §3, 4, 10).
/// Called with the key's lock held, so states of one key arrive here in the order hot applied them.
enum LowerWrite {
    /// `ordered` (if given) is called as soon as this state's place among the key's states is
    /// fixed, which may be before `done`: a write-behind state is in its place once it is the
    /// key's pending state, before its record is durable, so the key's lock can go then.
    static func apply(_ key: TierKey, _ state: KeyState, access: TierAccess, ordered: (() -> Void)? = nil,
                      _ done: @escaping (Result<Void, TierError>) -> Void) {
        let core = access.core
        switch core.rules.rule(for: key.bytes).policy {
        case .hotOnly:
            ordered?()
            done(.success(()))
        case .writeBehind:
            guard core.keyLog != nil else { writeThrough(key, state, access, ordered, done); return }
            core.mark(key, state.entry == nil ? .delete : .dirty, state, on: access.loop) { result in
                if case .failure(let e) = result {
                    // Backlog full or log broken: this write goes through instead. (Its order
                    // holds: the flusher writes only pending states, and a refused mark left
                    // none newer.)
                    Log.warning("Write-behind could not record a key (\(e)); writing it through")
                    writeThrough(key, state, access, nil, done)
                    return
                }
                done(.success(()))
            }
            ordered?()
        case .writeThrough:
            writeThrough(key, state, access, ordered, done)
        }
    }

    /// `apply` when nothing is to be waited for: a hot-only key, or a write-behind state whose
    /// mark completes at once (`KeyLog.marksAtOnce`). True if the state is in its place now;
    /// false, having changed nothing a later `apply` would not redo, when `apply` must run.
    static func applyAtOnce(_ key: TierKey, _ state: KeyState, access: TierAccess) -> Bool {
        let core = access.core
        switch core.rules.rule(for: key.bytes).policy {
        case .hotOnly:
            return true
        case .writeBehind:
            guard let log = core.keyLog, log.marksAtOnce else { return false }
            // A refused mark (backlog full, log broken) changes nothing `apply` relies on.
            return core.markNow(key, state, on: access.loop) == nil
        case .writeThrough:
            return false
        }
    }

    private static func writeThrough(_ key: TierKey, _ state: KeyState, _ access: TierAccess, _ ordered: (() -> Void)?,
                                     _ done: @escaping (Result<Void, TierError>) -> Void) {
        let core = access.core
        let done: (Result<Void, TierError>) -> Void = { result in ordered?(); done(result) }
        access.store(key, state) { result in
            switch result {
            case .success:
                // An older op still owed for this key (a delete to retry, a write-behind flush)
                // must not undo this write when it lands: it now carries this state instead.
                if let log = core.keyLog, log.pendingItem(key) != nil {
                    core.mark(key, .dirty, state, on: access.loop) { _ in done(.success(())) }
                    return
                }
                done(.success(()))
            case .failure(let e) where state.entry == nil:
                // A delete that did not land is recorded and retried; reads see the key absent.
                recordDeletes([key], access: access) {
                    done(core.keyLog == nil ? .failure(e) : .success(()))
                }
            case .failure(let e):
                // An error reply would have to mean the write did not happen, and hot has it
                // already: the write is recorded durably instead and flushed later, as
                // write-behind does (INFO: write_through_fallbacks).
                guard core.keyLog != nil else { done(.failure(e)); return }
                core.mark(key, .dirty, state, on: access.loop) { result in
                    if case .failure = result { done(.failure(e)); return }
                    core.stats.writeThroughFallbacks.add(1)
                    done(.success(()))
                }
            }
        }
    }

    /// The last resort when a written state reached neither a lower tier nor the key log: the
    /// keys are removed from hot (on the loop's own connection) and their deletes recorded, so no
    /// older value can be read from below. The client then gets an error.
    static func removeEverywhere(_ keys: [TierKey], access: TierAccess, hot: HotClient, homeDB: Int,
                                 _ done: @escaping () -> Void) {
        var batch = DBBatch(home: homeDB)
        for k in keys { batch.add([Array("DEL".utf8), k.bytes], db: k.db) }
        hot.send(batch.finish()) { _ in recordDeletes(keys, access: access, done) }
    }

    /// Records durably that `keys` must be deleted below; until that lands they read as absent.
    static func recordDeletes(_ keys: [TierKey], access: TierAccess, _ done: @escaping () -> Void) {
        guard access.core.keyLog != nil, !keys.isEmpty else { done(); return }
        var remaining = keys.count
        for k in keys {
            access.core.mark(k, .delete, .absent, on: access.loop) { result in
                if case .failure(let e) = result { Log.warning("Could not record a delete to retry: \(e)") }
                remaining -= 1
                if remaining == 0 { done() }
            }
        }
    }
}

/// Promotion: a copy found below is written to hot with its absolute expiry, only if hot has no
/// value of its own by then (a write that landed meanwhile, through any path, wins): a string
/// with `SET … NX PXAT`, any other type with `RESTORE … ABSTTL` of its `DUMP` payload, which
/// refuses (BUSYKEY) a key hot holds.
enum Promotion {
    static func setCommand(_ key: TierKey, _ entry: Entry) -> [[UInt8]] {
        guard entry.type == .string else {
            let at = entry.expiresAtMillis.map { String($0) } ?? "0"
            return [Array("RESTORE".utf8), key.bytes, Array(at.utf8), entry.value, Array("ABSTTL".utf8)]
        }
        var args: [[UInt8]] = [Array("SET".utf8), key.bytes, entry.value, Array("NX".utf8)]
        if let at = entry.expiresAtMillis { args += [Array("PXAT".utf8), Array(String(at).utf8)] }
        return args
    }

    /// Hot refused a promotion (OOM, a payload from a newer Redis …); BUSYKEY only says that hot
    /// holds the key already, as SET NX's nil does.
    static func refused(_ reply: ArraySlice<UInt8>) -> Bool {
        ReplyParts.isError(reply) && !reply.starts(with: Array("-BUSYKEY ".utf8))
    }
}
