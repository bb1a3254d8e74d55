/// Which lower tiers are configured, and the warm tier's item limit (Cosmos: 2 MB; SQLite: none).
public struct LowerTiers: Equatable, Sendable {
    public var hasWarm: Bool
    /// Largest value (bytes) warm stores; nil = no limit.
    public var warmItemLimit: Int?
    public var hasCold: Bool

    public init(hasWarm: Bool, warmItemLimit: Int? = nil, hasCold: Bool) {
        self.hasWarm = hasWarm
        self.warmItemLimit = warmItemLimit
        self.hasCold = hasCold
    }
}

/// Where one write's value goes below hot, and what else must happen there.
public struct Placement: Equatable, Sendable {
    public var policy: WritePolicy
    /// The lower tier that gets the value; nil = hot only.
    public var store: LowerTier?
    /// The other configured lower tiers, whose copy of the key must be deleted with this write.
    /// Reads look in warm, then cold: an older copy left in warm would shadow the new one in cold,
    /// and one left in cold would come back when the warm copy expires. Hot-only clears nothing:
    /// its keys are never looked up below.
    public var clear: [LowerTier]
    /// The rule's default expiry, for a write that creates the key without one of its own.
    public var defaultTTLSeconds: Int?

    public init(policy: WritePolicy, store: LowerTier?, clear: [LowerTier], defaultTTLSeconds: Int?) {
        self.policy = policy
        self.store = store
        self.clear = clear
        self.defaultTTLSeconds = defaultTTLSeconds
    }
}

extension PlacementRules {
    /// Decides where a write of `valueSize` bytes to `key` goes: the rule's tier, or cold when
    /// the value is over warm's item limit, or whichever lower tier is configured when the rule's
    /// is not. Throws `TierError.tooLarge` when only warm is configured and the value exceeds its
    /// limit (the client gets that error instead of a value that exists in hot alone).
    public func place(_ key: [UInt8], valueSize: Int, tiers: LowerTiers) throws -> Placement {
        let rule = rule(for: key)
        let configured = LowerTier.allCases.filter { $0 == .warm ? tiers.hasWarm : tiers.hasCold }
        func placement(_ store: LowerTier?) -> Placement {
            Placement(policy: store == nil ? .hotOnly : rule.policy, store: store,
                      clear: store == nil ? [] : configured.filter { $0 != store },
                      defaultTTLSeconds: rule.ttlSeconds)
        }
        if rule.policy == .hotOnly || configured.isEmpty { return placement(nil) }
        let fitsWarm = tiers.warmItemLimit.map { valueSize <= $0 } ?? true
        let warmUsable = tiers.hasWarm && fitsWarm
        switch rule.tier {
        case .cold where tiers.hasCold: return placement(.cold)
        case .warm where warmUsable: return placement(.warm)
        default:
            if tiers.hasCold { return placement(.cold) }
            if warmUsable { return placement(.warm) }
            throw TierError.tooLarge(limit: tiers.warmItemLimit ?? 0)
        }
    }
}
