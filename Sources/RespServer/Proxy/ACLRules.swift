import COpenSSL
import Tiers

/// One user as a `user` line (or `requirepass`) defines it, in Redis's ACL rule syntax, with
/// the rules applied in order as Redis's `ACLSetUser` applies them. Only hashes of passwords
/// are kept (as Redis does), so a user's description never holds a password.
struct ACLUser {
    let name: String
    var enabled = false
    var nopass = false
    /// Lowercase hex SHA-256 of each accepted password.
    var passwordHashes: [String] = []
    var allKeys = false
    var keyPatterns: [KeyPattern] = []
    var allChannels = false
    var channelPatterns: [GlobPattern] = []
    /// Command rules in order; resolved against the upstream's command table when it arrives.
    var commandRules: [CommandRule] = []

    struct KeyPattern {
        let glob: GlobPattern
        let read: Bool
        let write: Bool
    }

    enum CommandRule: Equatable {
        /// allcommands / +@all (true), nocommands / -@all (false).
        case all(Bool)
        case category(String, Bool)
        /// A command ("get") or a subcommand ("config|get").
        case command(String, Bool)
    }

    /// A user as Redis creates one (and as `reset` leaves it): off, no password, no keys, no
    /// channels (acl-pubsub-default resetchannels, Redis 7's default), no commands.
    init(name: String) { self.name = name }

    /// Redis's built-in default user: `on nopass ~* &* +@all`.
    static func builtInDefault() -> ACLUser {
        var u = ACLUser(name: "default")
        u.enabled = true
        u.nopass = true
        u.allKeys = true
        u.allChannels = true
        u.commandRules = [.all(true)]
        return u
    }

    /// The default user under `requirepass`: its password replaced (empty: nopass).
    mutating func setRequirePass(_ password: String) {
        passwordHashes = []
        nopass = password.isEmpty
        if !password.isEmpty { passwordHashes = [ACLUser.hash(Array(password.utf8))] }
    }

    /// True if `password` opens this user (Redis's `ACLCheckUserCredentials`).
    func accepts(_ password: [UInt8]) -> Bool {
        guard enabled else { return false }
        if nopass { return true }
        let h = ACLUser.hash(password)
        return passwordHashes.contains { constantTimeEqual($0, h) }
    }

    /// Applies one rule; the error's text never repeats a password.
    mutating func apply(_ rule: String) throws {
        let lower = rule.lowercased()
        if applyFlag(lower) { return }
        let bytes = Array(rule.utf8)
        guard let first = bytes.first else { throw ConfigError("empty ACL rule") }
        switch first {
        case UInt8(ascii: ">"), UInt8(ascii: "<"), UInt8(ascii: "#"), UInt8(ascii: "!"):
            try applyPassword(rule, bytes)
        case UInt8(ascii: "~"), UInt8(ascii: "%"):
            try addKeyPattern(rule)
        case UInt8(ascii: "&"):
            try addChannelPattern(bytes)
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            try applyCommandRule(rule, lower)
        case UInt8(ascii: "("):
            throw ConfigError("ACL selectors '(...)' are not supported by tierproxy")
        default:
            // Not repeated: a word that is no rule may be a password written without its '>'.
            throw ConfigError("Syntax error in an ACL rule starting with '\(String(rule.prefix(1)))'")
        }
    }

    /// The one-word rules (`on`, `nopass`, `allkeys`, `reset` …); false if `lower` is none of them.
    private mutating func applyFlag(_ lower: String) -> Bool {
        switch lower {
        case "on": enabled = true
        case "off": enabled = false
        case "nopass": nopass = true; passwordHashes = []
        case "resetpass": nopass = false; passwordHashes = []
        case "allkeys": allKeys = true; keyPatterns = []
        case "resetkeys": allKeys = false; keyPatterns = []
        case "allchannels": allChannels = true; channelPatterns = []
        case "resetchannels": allChannels = false; channelPatterns = []
        case "allcommands": commandRules = [.all(true)]
        case "nocommands": commandRules = [.all(false)]
        case "reset": self = ACLUser(name: name)
        default: return false
        }
        return true
    }

    /// `>password`, `<password`, `#hash`, `!hash`.
    private mutating func applyPassword(_ rule: String, _ bytes: [UInt8]) throws {
        switch bytes[0] {
        case UInt8(ascii: ">"):
            addHash(ACLUser.hash(Array(bytes.dropFirst())))
        case UInt8(ascii: "<"):
            let h = ACLUser.hash(Array(bytes.dropFirst()))
            guard passwordHashes.contains(h) else { throw ConfigError("'<' rule: no such password") }
            passwordHashes.removeAll { $0 == h }
        default:
            let hex = String(rule.dropFirst())
            guard hex.utf8.count == 64, hex.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else {
                throw ConfigError("The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters")
            }
            if bytes[0] == UInt8(ascii: "#") { addHash(hex); return }
            guard passwordHashes.contains(hex) else { throw ConfigError("'!' rule: no such password hash") }
            passwordHashes.removeAll { $0 == hex }
        }
    }

    /// `&pattern`.
    private mutating func addChannelPattern(_ bytes: [UInt8]) throws {
        guard !allChannels else {
            throw ConfigError("Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels")
        }
        let pattern = GlobPattern(Array(bytes.dropFirst()))
        if pattern.bytes == [UInt8(ascii: "*")] { allChannels = true; channelPatterns = [] }
        else if !channelPatterns.contains(pattern) { channelPatterns.append(pattern) }
    }

    /// `+cmd`, `-cmd`, `+@category`, `-@category`.
    private mutating func applyCommandRule(_ rule: String, _ lower: String) throws {
        let allow = lower.hasPrefix("+")
        let what = String(lower.dropFirst())
        if what.hasPrefix("@") {
            let category = String(what.dropFirst())
            if category == "all" { commandRules = [.all(allow)]; return }
            guard ACLUser.categories.contains(category) else { throw ConfigError("Unknown command or category name in ACL: '\(rule)'") }
            commandRules.append(.category(category, allow))
        } else {
            guard !what.isEmpty, !what.contains(" ") else { throw ConfigError("Syntax error in ACL rule '\(rule)'") }
            commandRules.append(.command(what, allow))
        }
    }

    private mutating func addHash(_ h: String) {
        nopass = false
        if !passwordHashes.contains(h) { passwordHashes.append(h) }
    }

    /// `~p` (read and write), `%R~p`, `%W~p`, `%RW~p`.
    private mutating func addKeyPattern(_ rule: String) throws {
        var read = true, write = true
        var rest = Substring(rule)
        if rest.hasPrefix("%") {
            guard let tilde = rest.firstIndex(of: "~") else { throw ConfigError("Syntax error in ACL rule '\(rule)'") }
            let perms = rest[rest.index(after: rest.startIndex)..<tilde].uppercased()
            guard !perms.isEmpty, perms.allSatisfy({ $0 == "R" || $0 == "W" }) else {
                throw ConfigError("Syntax error in ACL rule '\(rule)'")
            }
            read = perms.contains("R")
            write = perms.contains("W")
            rest = rest[tilde...]
        }
        guard !allKeys else {
            throw ConfigError("Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns")
        }
        let pattern = Array(rest.dropFirst().utf8)
        if pattern == [UInt8(ascii: "*")] && read && write { allKeys = true; keyPatterns = []; return }
        keyPatterns.append(KeyPattern(glob: GlobPattern(pattern), read: read, write: write))
    }

    /// The user as `ACL LIST` shows it: flags, password hashes, keys, channels, command rules.
    /// Command rules are listed as configured (Redis prints a computed equivalent).
    var description: String {
        var parts = ["user", name, enabled ? "on" : "off"]
        if nopass { parts.append("nopass") }
        parts += passwordHashes.map { "#" + $0 }
        if allKeys { parts.append("~*") }
        for p in keyPatterns {
            let text = String(decoding: p.glob.bytes, as: UTF8.self)
            parts.append(p.read && p.write ? "~" + text : (p.read ? "%R~" : "%W~") + text)
        }
        if allChannels { parts.append("&*") } else {
            parts.append("resetchannels")
            parts += channelPatterns.map { "&" + String(decoding: $0.bytes, as: UTF8.self) }
        }
        if commandRules.first != .all(true) && commandRules.first != .all(false) { parts.append("-@all") }
        for r in commandRules {
            switch r {
            case .all(let allow): parts.append(allow ? "+@all" : "-@all")
            case .category(let c, let allow): parts.append((allow ? "+@" : "-@") + c)
            case .command(let c, let allow): parts.append((allow ? "+" : "-") + c)
            }
        }
        return parts.joined(separator: " ")
    }

    /// Redis 7.0's ACL categories (`ACL CAT`).
    static let categories: Set<String> = [
        "keyspace", "read", "write", "set", "sortedset", "list", "hash", "string", "bitmap", "hyperloglog",
        "geo", "stream", "pubsub", "admin", "fast", "slow", "blocking", "dangerous", "connection",
        "transaction", "scripting",
    ]

    /// Lowercase hex SHA-256, as Redis stores passwords.
    static func hash(_ password: [UInt8]) -> String {
        var out = [UInt8](repeating: 0, count: 32)
        password.withUnsafeBufferPointer { p in _ = SHA256(p.baseAddress, p.count, &out) }
        let digits = Array("0123456789abcdef".utf8)
        var hex = [UInt8]()
        hex.reserveCapacity(64)
        for b in out { hex.append(digits[Int(b >> 4)]); hex.append(digits[Int(b & 15)]) }
        return String(decoding: hex, as: UTF8.self)
    }
}

/// Compares without stopping at the first difference (as Redis's `time_independent_strcmp`).
private func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    guard x.count == y.count else { return false }
    var diff: UInt8 = 0
    for i in 0..<x.count { diff |= x[i] ^ y[i] }
    return diff == 0
}

/// `auth-mode`, `requirepass` and `user` lines: who may connect when the proxy authenticates
/// clients itself.
struct ACLConfig {
    enum Mode: String { case passthrough, proxy }
    var mode = Mode.passthrough
    var requirePass = ""
    /// `user` lines in order, each as its words (name first).
    var userLines: [[String]] = []

    /// The users, by name: `default` from requirepass unless a `user default` line redefines it
    /// (as in Redis, where `user` lines are loaded after requirepass and reset the user first).
    func users() throws -> [String: ACLUser] {
        var byName: [String: ACLUser] = [:]
        var d = ACLUser.builtInDefault()
        if !requirePass.isEmpty { d.setRequirePass(requirePass) }
        byName["default"] = d
        var seen = Set<String>()
        for line in userLines {
            guard let name = line.first, !name.isEmpty else { throw ConfigError("'user' needs a name") }
            guard seen.insert(name).inserted else { throw ConfigError("Duplicate user '\(name)' found") }
            var u = ACLUser(name: name)
            for rule in line.dropFirst() {
                do { try u.apply(rule) } catch let e as ConfigError {
                    throw ConfigError("Error in user declaration '\(name)': \(e.description)")
                }
            }
            byName[name] = u
        }
        return byName
    }
}
