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
        /// The state the key's latest write left, when its writer knew it (in memory only: after
        /// a restart the flusher reads hot instead).
        var captured = KeyLog.Captured.unknown
        /// In `urgent`: its state is unknown here, so it does not wait out the flush delay.
        var urgent = false
    }

    private(set) var entries: [TierKey: Entry] = [:]
    /// Keys in the order they became pending. Slots go stale when a key completes (or completes
    /// and becomes pending again); they are skipped and swept out now and then.
    private var order: [(key: TierKey, epoch: UInt64)] = []
    private var orderHead = 0
    /// Every live slot of `order` before this one was handed out by `take` once: it is checked
    /// out now, or was given back through `urgent`. `take` starts here, not at the keys in flight.
    private var takeCursor = 0
    /// Keys whose state only hot knows (a collection written in place, a transaction's keys,
    /// every key after a restart), to flush without the delay: until then a read that misses hot
    /// could only find an older copy below.
    private var urgent: [(key: TierKey, epoch: UInt64)] = []
    private var urgentHead = 0
    private(set) var keyBytes = 0
    private(set) var deletes = 0
    private(set) var checkedOut = 0

    var count: Int { entries.count }

    /// Applies a dirty or delete op: the latest op wins; a key not yet pending joins the tail.
    mutating func mark(_ key: TierKey, _ op: KeyLog.Op, sequence: UInt64, sinceMillis: Int64,
                       captured: KeyLog.Captured = .unknown) {
        if let i = entries.index(forKey: key) {  // updated in place: one lookup
            reMark(at: i, op, sequence: sequence, captured: captured)
            return
        }
        entries[key] = Entry(op: op, sequence: sequence, sinceMillis: sinceMillis, epoch: sequence, captured: captured)
        order.append((key, sequence))
        keyBytes += key.bytes.count
        if op == .delete { deletes += 1 }
        if captured == .unknown, let i = entries.index(forKey: key) { markUrgent(at: i) }
    }

    /// The latest op of a key already pending: its place in `order` and `sinceMillis` stay.
    private mutating func reMark(at i: Dictionary<TierKey, Entry>.Index, _ op: KeyLog.Op, sequence: UInt64,
                                 captured: KeyLog.Captured) {
        if entries.values[i].op == .delete { deletes -= 1 }
        if op == .delete { deletes += 1 }
        entries.values[i].op = op
        entries.values[i].sequence = sequence
        entries.values[i].captured = captured
        if captured == .unknown { markUrgent(at: i) }
    }

    private mutating func markUrgent(at i: Dictionary<TierKey, Entry>.Index) {
        guard !entries.values[i].urgent else { return }
        entries.values[i].urgent = true
        urgent.append((entries.keys[i], entries.values[i].epoch))
    }

    /// `mark` for a live write: a key already pending is re-marked (keeping its `sinceMillis`,
    /// which is returned); a new one joins at `now` only if the set stays within `maxKeys` keys
    /// and `maxKeyBytes` key bytes, else nothing changes and the result is nil. One lookup.
    mutating func markIfRoom(_ key: TierKey, _ op: KeyLog.Op, sequence: UInt64, now: Int64, captured: KeyLog.Captured,
                             maxKeys: Int, maxKeyBytes: Int) -> Int64? {
        if let i = entries.index(forKey: key) {
            reMark(at: i, op, sequence: sequence, captured: captured)
            return entries.values[i].sinceMillis
        }
        guard entries.count < maxKeys, keyBytes + key.bytes.count <= maxKeyBytes else { return nil }
        mark(key, op, sequence: sequence, sinceMillis: now, captured: captured)
        return now
    }

    /// The latest op of `key` and the state it left, if pending.
    func state(_ key: TierKey) -> (op: KeyLog.Op, captured: KeyLog.Captured)? {
        entries[key].map { ($0.op, $0.captured) }
    }

    /// Forgets the captured state of `key` (still pending: the flusher reads hot for it).
    mutating func forgetCaptured(_ key: TierKey) {
        if let i = entries.index(forKey: key) {
            entries.values[i].captured = .unknown
            markUrgent(at: i)
        }
    }

    /// Forgets the captured states of every pending key of `db` (nil: of every db).
    mutating func forgetCaptured(db: Int?) {
        for i in entries.indices where db == nil || entries.keys[i].db == db {
            entries.values[i].captured = .unknown
            markUrgent(at: i)
        }
    }

    /// Clears `key` if its latest op is still `sequence`; a newer op keeps it pending (and
    /// available to `take` again). Returns whether it was cleared.
    @discardableResult
    mutating func complete(_ key: TierKey, sequence: UInt64) -> Bool {
        guard let i = entries.index(forKey: key) else { return false }
        if entries.values[i].checkedOut {
            entries.values[i].checkedOut = false
            checkedOut -= 1
            // Written again while in flight: its slot is behind `takeCursor`, so it is handed
            // out again through `urgent`.
            if entries.values[i].sequence != sequence { markUrgent(at: i) }
        }
        guard entries.values[i].sequence == sequence else { return false }
        let e = entries.remove(at: i).value
        keyBytes -= key.bytes.count
        if e.op == .delete { deletes -= 1 }
        sweepIfMostlyStale()
        return true
    }

    /// Up to `max` pending keys not already checked out that became pending by `dueBy` (Unix
    /// ms), oldest first; they are checked out until `complete` or `release`.
    /// Keys whose state is unknown here (`urgent`) go first, whatever `dueBy` says.
    mutating func take(max: Int, dueBy: Int64 = .max) -> [KeyLog.Item] {
        var items = [KeyLog.Item]()
        takeUrgent(max: max, into: &items)
        var i = Swift.max(orderHead, takeCursor)
        while i < order.count && items.count < max {
            let slot = order[i]
            if let j = entries.index(forKey: slot.key), entries.values[j].epoch == slot.epoch {
                // `order` is the order keys became pending in: the rest are younger still.
                if entries.values[j].sinceMillis > dueBy { break }
                if !entries.values[j].checkedOut { checkOut(at: j, into: &items) }
            } else if i == orderHead {
                orderHead += 1  // stale at the front: drop it for good
            }
            i += 1
        }
        takeCursor = i
        return items
    }

    private mutating func takeUrgent(max: Int, into items: inout [KeyLog.Item]) {
        while urgentHead < urgent.count && items.count < max {
            let slot = urgent[urgentHead]
            urgentHead += 1
            guard let j = entries.index(forKey: slot.key), entries.values[j].epoch == slot.epoch else { continue }
            entries.values[j].urgent = false
            if !entries.values[j].checkedOut { checkOut(at: j, into: &items) }
        }
        if urgentHead == urgent.count {
            urgent.removeAll(keepingCapacity: urgent.count <= 4096)
            urgentHead = 0
        } else if urgentHead > 4096 && urgentHead * 2 > urgent.count {
            urgent.removeFirst(urgentHead)
            urgentHead = 0
        }
    }

    private mutating func checkOut(at j: Dictionary<TierKey, Entry>.Index, into items: inout [KeyLog.Item]) {
        entries.values[j].checkedOut = true
        checkedOut += 1
        let e = entries.values[j]
        items.append(KeyLog.Item(op: e.op, key: entries.keys[j], sequence: e.sequence, sinceMillis: e.sinceMillis))
    }

    /// The latest op of `key`, if pending (a retry flushes what is current, not what was taken).
    func current(_ key: TierKey) -> KeyLog.Item? {
        entries[key].map { KeyLog.Item(op: $0.op, key: key, sequence: $0.sequence, sinceMillis: $0.sinceMillis) }
    }

    /// Returns a checked-out key without completing it, for `take` to hand out again.
    mutating func release(_ key: TierKey) {
        guard let i = entries.index(forKey: key), entries.values[i].checkedOut else { return }
        entries.values[i].checkedOut = false
        checkedOut -= 1
        markUrgent(at: i)  // its slot is behind `takeCursor`
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
        var kept: [(key: TierKey, epoch: UInt64)] = []
        var cursor = 0
        for (i, slot) in order.enumerated().dropFirst(orderHead) where entries[slot.key]?.epoch == slot.epoch {
            if i < takeCursor { cursor += 1 }
            kept.append(slot)
        }
        order = kept
        orderHead = 0
        takeCursor = cursor
    }
}

extension KeyLog.Op {
    var recordKind: KeyLogRecord.Kind { self == .dirty ? .dirty : .delete }
}
