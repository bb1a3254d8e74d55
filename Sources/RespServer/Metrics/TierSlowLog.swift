import Tiers

/// The tier slow-log: one line per tier operation slower than `tier-slowlog-threshold`, with the
/// tier, op, duration, outcome and the key hashed (its db and an FNV-1a hash, so lines about one
/// key can be matched up without the key itself reaching the logs; `log-keys yes` prints it).
enum TierSlowLog {
    static func note(_ tier: LowerTier, _ op: TierOp, _ key: TierKey, micros: Int, outcome: TierOutcome,
                     error: TierError?, settings: RuntimeSettings) {
        let threshold = settings.slowlogThresholdMillis
        guard threshold >= 0, micros >= threshold * 1000 else { return }
        var fields: [(String, LogValue)] = [
            ("event", .text("tier_slow")), ("tier", .text(tier.rawValue)), ("op", .text(op.label)),
            ("duration_ms", .number(Double(micros) / 1000)), ("outcome", .text(outcome.label)),
            ("db", .number(Double(key.db))),
        ]
        fields.append(keyField(key, settings))
        if let error { fields.append(("error", .text("\(error)"))) }
        Log.event(.warning, "Tier slow operation", fields)
    }

    /// The key as tier log lines show it: hashed, or itself with `log-keys yes`.
    static func keyField(_ key: TierKey, _ settings: RuntimeSettings) -> (String, LogValue) {
        settings.logKeys ? ("key", .text(String(decoding: key.bytes, as: UTF8.self))) : ("key_hash", .text(keyHash(key.bytes)))
    }

    /// FNV-1a 64 of the key, as 16 hex digits: stable across restarts and instances.
    static func keyHash(_ bytes: [UInt8]) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
