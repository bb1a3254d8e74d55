import RESP
import Tiers

/// Every command and subcommand of the upstream's `COMMAND` reply numbered, with what an ACL
/// check needs of it; built once per loop when the table arrives, so that a request costs one
/// dictionary look-up and one bit test.
struct ACLCommandSpace {
    struct Entry {
        /// "get", or "config|get" for a subcommand (Redis's `fullname`, as NOPERM names it).
        let fullName: String
        let arity: Int
        let categories: Set<String>
        let noAuth: Bool
        /// Its key specs but the not_key ones, with what each does to its keys (read: `access`;
        /// write: insert, update or delete), read once here rather than per request.
        let keySpecs: [KeyUse]
        /// SET, BITFIELD and SORT find or use keys beyond what their key specs say.
        let special: Special
        /// Ids of its subcommands (empty for a plain command).
        var children: [Int] = []
        let channels: ChannelArgs
    }

    struct KeyUse {
        let spec: KeySpec
        let read: Bool
        let write: Bool
        /// `variable_flags`: what the command does with the key depends on its options.
        let variable: Bool
    }

    enum Special { case none, set, bitfield, sort, sortRO }

    /// Which arguments a command names channels with, as Redis's `getChannelsFromCommand` says
    /// (only publish and subscribe are checked against a user's channels).
    enum ChannelArgs {
        case none
        case first
        case all(pattern: Bool)
    }

    private(set) var entries: [Entry] = []
    private var ids: [CommandName: Int] = [:]
    private var subIds: [String: Int] = [:]

    init() {}

    init(_ table: CommandTable) {
        for name in table.allNames.sorted() {
            guard let info = table.info(CommandName(name)) else { continue }
            let id = add(info)
            ids[CommandName(name)] = id
            for sub in table.subcommands(of: name).sorted(by: { $0.name < $1.name }) {
                let subId = add(sub)
                subIds[sub.name] = subId
                entries[id].children.append(subId)
            }
        }
    }

    private mutating func add(_ info: CommandInfo) -> Int {
        let channels: ChannelArgs
        switch info.name {
        case "publish", "spublish": channels = .first
        case "subscribe", "ssubscribe": channels = .all(pattern: false)
        case "psubscribe": channels = .all(pattern: true)
        default: channels = .none
        }
        let uses = info.keySpecs.filter { !$0.flags.contains("not_key") }.map { spec in
            KeyUse(spec: spec, read: spec.flags.contains("access"),
                   write: !spec.flags.isDisjoint(with: ["insert", "update", "delete"]), variable: spec.flags.contains("variable_flags"))
        }
        let specials: [String: Special] = ["set": .set, "bitfield": .bitfield, "sort": .sort, "sort_ro": .sortRO]
        entries.append(Entry(fullName: info.name, arity: info.arity, categories: info.categories,
                             noAuth: info.flags.contains("no_auth"), keySpecs: uses, special: specials[info.name] ?? .none,
                             channels: channels))
        return entries.count - 1
    }

    var isEmpty: Bool { entries.isEmpty }
    func id(_ name: CommandName) -> Int? { ids[name] }
    func id(subcommand fullName: String) -> Int? { subIds[fullName] }

    /// The command a request runs, as Redis resolves it (a container's subcommand by its first
    /// argument); nil when Redis itself would refuse it before any ACL check (unknown command or
    /// subcommand, wrong number of arguments): the upstream then answers with its own error.
    func resolve(_ name: CommandName, argc: Int, subcommand: () -> [UInt8]) -> Int? {
        guard var id = ids[name] else { return nil }
        if !entries[id].children.isEmpty && argc >= 2 {
            let sub = String(decoding: subcommand(), as: UTF8.self).lowercased()
            guard let s = subIds[entries[id].fullName + "|" + sub] else { return nil }
            id = s
        }
        let arity = entries[id].arity
        if (arity > 0 && arity != argc) || argc < -arity { return nil }
        return id
    }
}

/// A user's rules resolved against the command space: the command bits and everything else the
/// per-request check reads.
struct ACLPermissions {
    let user: ACLUser
    private var bits: [UInt64]
    /// Every command allowed (TIERS, a proxy command the table does not list, needs this).
    let allowsEverything: Bool

    /// `logging`: say which rules name commands the upstream does not have (one loop says it).
    init(_ user: ACLUser, space: ACLCommandSpace, logging: Bool = false) {
        self.user = user
        let count = space.entries.count
        var bits = [UInt64](repeating: 0, count: (count + 63) / 64)
        func set(_ id: Int, _ on: Bool) {
            if on { bits[id >> 6] |= 1 << UInt64(id & 63) } else { bits[id >> 6] &= ~(1 << UInt64(id & 63)) }
        }
        func setWithChildren(_ id: Int, _ on: Bool) {
            set(id, on)
            for c in space.entries[id].children { set(c, on) }
        }
        for rule in user.commandRules {
            switch rule {
            case .all(let on):
                for id in 0..<count { set(id, on) }
            case .category(let category, let on):
                for (id, e) in space.entries.enumerated() where e.categories.contains(category) { set(id, on) }
            case .command(let name, let on):
                if let id = space.id(subcommand: name) { set(id, on) }
                else if !name.contains("|"), let id = space.id(CommandName(name)) { setWithChildren(id, on) }
                else if logging { Log.warning("ACL user '\(user.name)': the upstream has no command '\(name)'; rule ignored") }
            }
        }
        self.bits = bits
        allowsEverything = count > 0 && (0..<count).allSatisfy { bits[$0 >> 6] & (1 << UInt64($0 & 63)) != 0 }
    }

    func allows(_ id: Int) -> Bool { bits[id >> 6] & (1 << UInt64(id & 63)) != 0 }

    /// Whether the request's keys pass: Redis's `ACLSelectorCheckKey` over the keys its key
    /// specs find (a read needs a pattern with R, an insert, update or delete one with W).
    func allowsKeys(_ entry: ACLCommandSpace.Entry, _ args: [[UInt8]]) -> Bool {
        if user.allKeys { return true }
        for use in entry.keySpecs {
            var (read, write) = (use.read, use.write)
            if use.variable { (read, write) = ACLPermissions.variableFlags(entry, args, read, write) }
            for i in use.spec.keyIndexes(args) where !allowsKey(args[i], read: read, write: write) { return false }
        }
        if let store = ACLPermissions.sortStore(entry, args), !allowsKey(args[store], read: false, write: true) { return false }
        return true
    }

    private func allowsKey(_ key: [UInt8], read: Bool, write: Bool) -> Bool {
        user.keyPatterns.contains { p in (!read || p.read) && (!write || p.write) && p.glob.matches(key) }
    }

    /// What SET and BITFIELD do with their key depends on their options (Redis's `setGetKeys`,
    /// `bitfieldGetKeys`): SET without GET only writes, BITFIELD with only GETs only reads.
    private static func variableFlags(_ entry: ACLCommandSpace.Entry, _ args: [[UInt8]], _ read: Bool, _ write: Bool) -> (Bool, Bool) {
        func word(_ i: Int) -> String { String(decoding: args[i], as: UTF8.self).lowercased() }
        switch entry.special {
        case .set:
            return (args.count > 3 && (3..<args.count).contains { asciiCaseEqual(args[$0], "get") }, true)
        case .bitfield:
            var i = 2
            while i < args.count {
                let more = args.count - i - 1
                switch word(i) {
                case "get" where more >= 2: i += 3
                case "overflow" where more >= 1: i += 2
                default: return (true, true)
                }
            }
            return (true, false)
        default:
            return (read, write)
        }
    }

    /// Redis refuses SORT's BY (with a pattern) and GET to a user without access to every key
    /// (they read keys no argument names): that error, or nil. Options are walked as Redis's
    /// `sortCommandGeneric` walks them; a syntax error is left to the upstream.
    func sortPatternRefusal(_ entry: ACLCommandSpace.Entry, _ args: [[UInt8]]) -> String? {
        guard entry.special == .sort || entry.special == .sortRO,
              !user.keyPatterns.contains(where: { $0.read && $0.glob.bytes == [UInt8(ascii: "*")] }) else { return nil }
        var j = 2
        while j < args.count {
            let left = args.count - j - 1
            switch String(decoding: args[j], as: UTF8.self).lowercased() {
            case "asc", "desc", "alpha": break
            case "limit" where left >= 2: j += 2
            case "store" where left >= 1 && entry.special == .sort: j += 1
            case "by" where left >= 1:
                if args[j + 1].contains(UInt8(ascii: "*")) { return "BY option of SORT denied due to insufficient ACL permissions." }
                j += 1
            case "get" where left >= 1: return "GET option of SORT denied due to insufficient ACL permissions."
            default: return nil
            }
            j += 1
        }
        return nil
    }

    /// SORT's STORE destination, which its key specs cannot locate (Redis's `sortGetKeys`).
    private static func sortStore(_ entry: ACLCommandSpace.Entry, _ args: [[UInt8]]) -> Int? {
        guard entry.special == .sort else { return nil }
        var i = 2
        while i < args.count {
            let word = String(decoding: args[i], as: UTF8.self).lowercased()
            switch word {
            case "limit": i += 3
            case "get", "by": i += 2
            case "store": return i + 1 < args.count ? i + 1 : nil
            default: i += 1
            }
        }
        return nil
    }

    /// Whether the channels a publish or subscribe names pass (`ACLCheckChannelAgainstList`:
    /// a pattern subscription must be listed literally, a channel matches a pattern).
    func allowsChannels(_ entry: ACLCommandSpace.Entry, _ args: [[UInt8]]) -> Bool {
        if user.allChannels { return true }
        let indexes: Range<Int>
        let literal: Bool
        switch entry.channels {
        case .none: return true
        case .first: indexes = 1..<min(2, args.count); literal = false
        case .all(let pattern): indexes = 1..<args.count; literal = pattern
        }
        for i in indexes {
            let channel = args[i]
            let ok = user.channelPatterns.contains { p in literal ? p.bytes == channel : p.matches(channel) }
            if !ok { return false }
        }
        return true
    }
}

