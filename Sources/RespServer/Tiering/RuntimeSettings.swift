import Tiers
import Synchronization

/// The tiering settings an operator may change while clients run (`TIERS CONFIG SET`): rules,
/// tier-timeout, negative-cache-ms, tier-slowlog-threshold, loglevel and tiers-keyspace. Every loop reads them on
/// each tiered command, so reads take no lock: numbers are atomics, and the rules are an immutable
/// box published by pointer. A replaced box is never freed (rule changes are rare operator
/// actions), so a loop that loaded the old pointer a moment ago still reads valid memory.
final class RuntimeSettings: @unchecked Sendable {
    private final class RulesBox {
        let rules: PlacementRules
        init(_ rules: PlacementRules) { self.rules = rules }
    }

    private let rulesPointer: Atomic<Int>
    private let timeout: Atomic<Int>
    private let slowlog: Atomic<Int>
    private let keyspaceBelow: Atomic<Bool>
    let logKeys: Bool
    /// Set once by `TieringCore` (its ttl is the negative-cache-ms setting).
    var negative: NegativeCache?

    init(_ config: Config) {
        rulesPointer = Atomic(RuntimeSettings.publish(PlacementRules(config.rules)))
        timeout = Atomic(config.tierTimeoutMillis)
        slowlog = Atomic(config.tierSlowlogThresholdMillis)
        keyspaceBelow = Atomic(config.tiersKeyspace)
        logKeys = config.logKeys
    }

    private static func publish(_ rules: PlacementRules) -> Int {
        Int(bitPattern: Unmanaged.passRetained(RulesBox(rules)).toOpaque())
    }

    var rules: PlacementRules {
        let raw = UnsafeRawPointer(bitPattern: rulesPointer.load(ordering: .acquiring))!
        return Unmanaged<RulesBox>.fromOpaque(raw).takeUnretainedValue().rules
    }
    var tierTimeoutMillis: Int { timeout.load(ordering: .relaxed) }
    var slowlogThresholdMillis: Int { slowlog.load(ordering: .relaxed) }
    /// SCAN, KEYS, DBSIZE and RANDOMKEY see the lower tiers (`tiers-keyspace`).
    var keyspaceSeesBelow: Bool { keyspaceBelow.load(ordering: .relaxed) }

    /// The names `TIERS CONFIG GET|SET` know, in the order `TIERS CONFIG GET *` lists them.
    static let names = ["rules", "tier-timeout", "negative-cache-ms", "tier-slowlog-threshold", "loglevel", "tiers-keyspace"]

    func get(_ name: String) -> String? {
        switch name {
        case "rules": return rules.rules.map(RuntimeSettings.describe).joined(separator: "; ")
        case "tier-timeout": return "\(tierTimeoutMillis)"
        case "negative-cache-ms": return "\(negative?.ttlMillis ?? 0)"
        case "tier-slowlog-threshold": return "\(slowlogThresholdMillis)"
        case "loglevel": return ["debug", "verbose", "notice", "warning"][Log.level.rawValue]
        case "tiers-keyspace": return keyspaceSeesBelow ? "yes" : "no"
        default: return nil
        }
    }

    /// Applies `value` to setting `name`; throws a message worded as Redis's CONFIG SET errors.
    func set(_ name: String, _ value: String) throws { try set([(name, value)]) }

    /// Applies every (name, value) or none, as Redis 7's multi-argument CONFIG SET: each value is
    /// parsed first, and a name given twice is refused. Names are matched in any case and quoted
    /// in errors as given.
    func set(_ pairs: [(String, String)]) throws {
        var seen: Set<String> = []
        var apply: [() -> Void] = []
        for (name, value) in pairs {
            guard RuntimeSettings.names.contains(name.lowercased()) else {
                throw ConfigError("Unknown option or number of arguments for CONFIG SET - '\(name)'")
            }
            guard seen.insert(name.lowercased()).inserted else {
                throw ConfigError("CONFIG SET failed (possibly related to argument '\(name)') - duplicate parameter")
            }
            apply.append(try prepare(name, value))
        }
        apply.forEach { $0() }
    }

    /// Parses `value` for `name`; the returned closure stores it.
    private func prepare(_ name: String, _ value: String) throws -> () -> Void {
        do {
            switch name.lowercased() {
            case "rules":
                var parsed = PlacementRules()
                for text in value.split(separator: ";") where !text.allSatisfy({ $0 == " " }) {
                    do { parsed.append(try PlacementRule(arguments: try ConfigLoader.split(String(text)))) }
                    catch let e as RuleError { throw ConfigError(e.message) }
                }
                return { [self] in rulesPointer.store(RuntimeSettings.publish(parsed), ordering: .releasing) }
            case "tier-timeout":
                let n = try Units.int(value, 1...3_600_000)
                return { [self] in timeout.store(n, ordering: .relaxed) }
            case "negative-cache-ms":
                let n = Int64(try Units.int(value, 0...3_600_000))
                return { [self] in negative?.ttlMillis = n }
            case "tier-slowlog-threshold":
                let n = try Units.int(value, -1...3_600_000)
                return { [self] in slowlog.store(n, ordering: .relaxed) }
            case "tiers-keyspace":
                let on = try Units.bool(value)
                return { [self] in keyspaceBelow.store(on, ordering: .relaxed) }
            default:   // loglevel
                var c = Config()
                try configDirectives["loglevel"]!.apply(&c, [value])
                let level = c.loglevel
                return { Log.level = level }
            }
        } catch let e as ConfigError {
            throw ConfigError("CONFIG SET failed (possibly related to argument '\(name)') - \(e.description)")
        } catch {
            throw ConfigError("CONFIG SET failed (possibly related to argument '\(name)') - \(error)")
        }
    }

    /// A rule written back in the conf file's words.
    static func describe(_ r: PlacementRule) -> String {
        var words = [String(decoding: r.pattern.bytes, as: UTF8.self), "policy", r.policy.rawValue]
        if let ttl = r.ttlSeconds { words += ["ttl", "\(ttl)"] }
        if r.policy != .hotOnly { words += ["tier", r.tier.rawValue] }
        return words.joined(separator: " ")
    }
}
