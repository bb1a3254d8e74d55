/// The keys waiting for the lower tiers, latest op per key, oldest first. Not thread-safe:
/// `KeyLog` guards it with its lock. Replay builds it by applying records in file order.
struct PendingSet {
    struct Entry {
        var op: KeyLog.Op
        var sequence: UInt64
        /// When the key became pending (Unix ms); re-marking it does not move this.
        var sinceMillis: Int64
        /// Sequence at which the key became pending: tells a live `order` slot from a stale one.
        var epoch: UInt64
        /// Handed out by `take` and not yet completed or released.
        var checkedOut = false
    }

    private(set) var entries: [TierKey: Entry] = [:]
    /// Keys in the order they became pending. Slots go stale when a key completes (or completes
    /// and becomes pending again); they are skipped and swept out now and then.
    private var order: [(key: TierKey, epoch: UInt64)] = []
    private var orderHead = 0
    private(set) var keyBytes = 0
    private(set) var deletes = 0
    private(set) var checkedOut = 0

    var count: Int { entries.count }

    /// When `key` became pending, if it is.
    func sinceMillis(of key: TierKey) -> Int64? { entries[key]?.sinceMillis }

    /// Applies a dirty or delete op: the latest op wins; a key not yet pending joins the tail.
    mutating func mark(_ key: TierKey, _ op: KeyLog.Op, sequence: UInt64, sinceMillis: Int64) {
        if let i = entries.index(forKey: key) {  // updated in place: one lookup
            if entries.values[i].op == .delete { deletes -= 1 }
            entries.values[i].op = op
            entries.values[i].sequence = sequence
        } else {
            entries[key] = Entry(op: op, sequence: sequence, sinceMillis: sinceMillis, epoch: sequence)
            order.append((key, sequence))
            keyBytes += key.bytes.count
        }
        if op == .delete { deletes += 1 }
    }

    /// Clears `key` if its latest op is still `sequence`; a newer op keeps it pending (and
    /// available to `take` again). Returns whether it was cleared.
    @discardableResult
    mutating func complete(_ key: TierKey, sequence: UInt64) -> Bool {
        guard let i = entries.index(forKey: key) else { return false }
        if entries.values[i].checkedOut {
            entries.values[i].checkedOut = false
            checkedOut -= 1
        }
        guard entries.values[i].sequence == sequence else { return false }
        let e = entries.remove(at: i).value
        keyBytes -= key.bytes.count
        if e.op == .delete { deletes -= 1 }
        sweepIfMostlyStale()
        return true
    }

    /// Up to `max` pending keys not already checked out, oldest first; they are checked out
    /// until `complete` or `release`.
    mutating func take(max: Int) -> [KeyLog.Item] {
        var items = [KeyLog.Item]()
        var i = orderHead
        while i < order.count && items.count < max {
            let slot = order[i]
            if let j = entries.index(forKey: slot.key), entries.values[j].epoch == slot.epoch {
                if !entries.values[j].checkedOut {
                    entries.values[j].checkedOut = true
                    checkedOut += 1
                    let e = entries.values[j]
                    items.append(KeyLog.Item(op: e.op, key: slot.key, sequence: e.sequence, sinceMillis: e.sinceMillis))
                }
            } else if i == orderHead {
                orderHead += 1  // stale at the front: drop it for good
            }
            i += 1
        }
        return items
    }

    /// The latest op of `key`, if pending (a retry flushes what is current, not what was taken).
    func current(_ key: TierKey) -> KeyLog.Item? {
        entries[key].map { KeyLog.Item(op: $0.op, key: key, sequence: $0.sequence, sinceMillis: $0.sinceMillis) }
    }

    /// Returns a checked-out key without completing it, for `take` to hand out again.
    mutating func release(_ key: TierKey) {
        guard var e = entries[key], e.checkedOut else { return }
        e.checkedOut = false
        checkedOut -= 1
        entries[key] = e
    }

    /// The earliest `sinceMillis` among pending keys.
    mutating func oldestSinceMillis() -> Int64? {
        while orderHead < order.count {
            let slot = order[orderHead]
            if let e = entries[slot.key], e.epoch == slot.epoch { return e.sinceMillis }
            orderHead += 1
        }
        return nil
    }

    /// Every pending key as the records that recreate it (what compaction writes), oldest first.
    func snapshot() -> [KeyLogRecord] {
        var records = [KeyLogRecord]()
        records.reserveCapacity(entries.count)
        for slot in order[orderHead...] {
            guard let e = entries[slot.key], e.epoch == slot.epoch else { continue }
            records.append(KeyLogRecord(kind: e.op.recordKind, sequence: e.sequence, key: slot.key, sinceMillis: e.sinceMillis))
        }
        return records
    }

    /// Replays one record read from the log.
    mutating func apply(_ record: KeyLogRecord) {
        switch record.kind {
        case .dirty: mark(record.key, .dirty, sequence: record.sequence, sinceMillis: record.sinceMillis)
        case .delete: mark(record.key, .delete, sequence: record.sequence, sinceMillis: record.sinceMillis)
        case .done: complete(record.key, sequence: record.sequence)
        }
    }

    /// Keeps `order` within a small multiple of the live keys, so memory follows the backlog.
    private mutating func sweepIfMostlyStale() {
        let slots = order.count - orderHead
        guard slots > 1024, slots > 2 * entries.count else { return }
        order = order[orderHead...].filter { entries[$0.key]?.epoch == $0.epoch }
        orderHead = 0
    }
}

extension KeyLog.Op {
    var recordKind: KeyLogRecord.Kind { self == .dirty ? .dirty : .delete }
}
