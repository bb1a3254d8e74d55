/// How a write reaches the lower tiers (docs/semantics.md §3).
public enum WritePolicy: String, CaseIterable, Sendable {
    /// Reply after hot and the lower tier both acknowledged.
    case writeThrough = "write-through"
    /// Reply after hot; the key is recorded durably and flushed in batches.
    case writeBehind = "write-behind"
    /// Hot only: nothing is written below, and misses do not look below.
    case hotOnly = "hot-only"
}

/// A lower tier, by role.
public enum LowerTier: String, CaseIterable, Sendable {
    case warm, cold
}

/// One `rule PATTERN policy write-through|write-behind|hot-only [ttl SECONDS] [tier warm|cold]` line.
///
/// The seed library's presets, as rules (first match wins, so specific patterns go first):
///
///     rule session:* policy hot-only ttl 300           # sessions: hot only, 300 s unless the write sets its own
///     rule profile:* policy write-through tier warm    # profiles: hot + warm, reply after warm acknowledged
///     rule catalog:* policy write-through tier cold    # catalog snapshots: straight to cold, no expiry
///
/// `ttl` is the expiry given to a write that creates the key without one of its own (`SET k v`,
/// `MSET`); it is the key's logical expiry, the same in every tier that holds it.
/// `tier` is where values go first; one too large for warm goes to cold regardless (`Placement`).
public struct PlacementRule: Equatable, Sendable {
    public var pattern: GlobPattern
    public var policy: WritePolicy
    public var ttlSeconds: Int?
    public var tier: LowerTier

    /// What applies to a key no rule matches: write-through to warm, no default expiry.
    public static let fallback = PlacementRule(pattern: GlobPattern("*"), policy: .writeThrough)

    public init(pattern: GlobPattern, policy: WritePolicy, ttlSeconds: Int? = nil, tier: LowerTier = .warm) {
        self.pattern = pattern
        self.policy = policy
        self.ttlSeconds = ttlSeconds
        self.tier = tier
    }

    /// Parses a rule's words after `rule` (as the conf splitter gives them): the pattern, then
    /// `policy` (required), `ttl` and `tier` in any order, keywords case-insensitive as in redis.conf.
    public init(arguments: [String]) throws {
        guard let first = arguments.first else {
            throw RuleError("'rule' needs a pattern: rule PATTERN policy write-through|write-behind|hot-only "
                            + "[ttl SECONDS] [tier warm|cold]")
        }
        let context = "rule '\(first)'"
        var policy: WritePolicy?, ttl: Int?, tier: LowerTier?
        var i = 1
        while i < arguments.count {
            let option = arguments[i].lowercased()
            guard ["policy", "ttl", "tier"].contains(option) else {
                throw RuleError("\(context): unknown word '\(arguments[i])' (expected policy, ttl or tier)")
            }
            guard i + 1 < arguments.count else { throw RuleError("\(context): '\(option)' needs a value") }
            let value = arguments[i + 1]
            i += 2
            switch option {
            case "policy":
                guard policy == nil else { throw RuleError("\(context): 'policy' given twice") }
                guard let p = WritePolicy(rawValue: value.lowercased()) else {
                    throw RuleError("\(context): unknown policy '\(value)' (write-through, write-behind or hot-only)")
                }
                policy = p
            case "ttl":
                guard ttl == nil else { throw RuleError("\(context): 'ttl' given twice") }
                guard let seconds = Int(value), seconds > 0, seconds <= Int(Int32.max) else {
                    throw RuleError("\(context): ttl '\(value)' is not a whole number of seconds from 1 to \(Int32.max)")
                }
                ttl = seconds
            default:
                guard tier == nil else { throw RuleError("\(context): 'tier' given twice") }
                guard let t = LowerTier(rawValue: value.lowercased()) else {
                    throw RuleError("\(context): unknown tier '\(value)' (warm or cold)")
                }
                tier = t
            }
        }
        guard let policy else { throw RuleError("\(context): 'policy' is required (write-through, write-behind or hot-only)") }
        if policy == .hotOnly, let tier {
            throw RuleError("\(context): 'tier \(tier.rawValue)' contradicts 'policy hot-only' (hot-only writes no lower tier)")
        }
        self.init(pattern: GlobPattern(Array(first.utf8)), policy: policy, ttlSeconds: ttl, tier: tier ?? .warm)
    }

    /// Whether a miss on a key under this rule may look below hot.
    public var readsLowerTiers: Bool { policy != .hotOnly }
}

/// The configured rules, in order; the first whose pattern matches a key decides for it.
public struct PlacementRules: Sendable {
    public private(set) var rules: [PlacementRule]

    public init(_ rules: [PlacementRule] = []) { self.rules = rules }

    public mutating func append(_ rule: PlacementRule) { rules.append(rule) }

    /// The rule for `key`: the first match, else `PlacementRule.fallback`.
    public func rule(for key: [UInt8]) -> PlacementRule {
        for r in rules where r.pattern.matches(key) { return r }
        return .fallback
    }
}

/// A rule line that cannot be used; the message names the offending word.
public struct RuleError: Error, Equatable, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
