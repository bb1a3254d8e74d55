import Tiers

/// A lower-tier entry that could not be read: damaged, sealed with a key that is not configured,
/// or failing authentication (tampered with, moved). The client gets an error reply; this is the
/// operator's line, one per failed read, with the key hashed (`log-keys yes` prints it).
/// Nothing is deleted or rewritten because of it.
enum TierEntryLog {
    static func unreadable(_ tier: LowerTier, _ key: TierKey, _ error: TierError, settings: RuntimeSettings) {
        Log.event(.warning, "Tier entry unreadable", [
            ("event", .text("tier_entry_unreadable")), ("tier", .text(tier.rawValue)),
            ("db", .number(Double(key.db))), TierSlowLog.keyField(key, settings), ("error", .text("\(error)")),
        ])
    }

    /// A copy found below that hot cannot RESTORE (`RDBVersions`): the command gets `error`.
    static func notRestorable(_ tier: LowerTier, _ key: TierKey, _ error: TierError, settings: RuntimeSettings) {
        Log.event(.warning, "Tier entry not restorable by hot", [
            ("event", .text("tier_entry_not_restorable")), ("tier", .text(tier.rawValue)),
            ("db", .number(Double(key.db))), TierSlowLog.keyField(key, settings), ("error", .text("\(error)")),
        ])
    }

    /// `error` naming the tier it came from, when it is about a stored entry.
    static func naming(_ error: TierError, _ tier: LowerTier, _ name: String) -> TierError {
        guard case .corrupt(let message) = error else { return error }
        let prefix = name.hasPrefix(tier.rawValue) ? name : "\(tier.rawValue) \(name)"
        return .corrupt("\(prefix): \(message)")
    }
}
