import CHiredis
import RESP

/// What Redis says about one command in its `COMMAND` reply.
struct CommandInfo {
    let name: String
    /// Positive: exact argument count (incl. the name); negative: at least -arity.
    let arity: Int
    let flags: Set<String>
    /// Key positions (1-based into argv): first, last (negative counts from the end), step.
    let firstKey: Int
    let lastKey: Int
    let step: Int
    /// ACL categories without the '@' ("string", "hash", "scripting" …).
    var categories: Set<String> = []
    var keySpecs: [KeySpec] = []
    /// What tiering asks of the command on every request, worked out once when the table is
    /// built (nil for an entry made elsewhere: worked out when asked).
    var tiering: WriteRule.Facts?
    var isWrite: Bool { flags.contains("write") }
    var isReadonly: Bool { flags.contains("readonly") }

    /// Indexes into argv that hold keys, for a request with `argc` arguments.
    func keyIndexes(argc: Int) -> [Int] {
        guard firstKey > 0, step > 0 else { return [] }
        let last = lastKey >= 0 ? lastKey : argc + lastKey
        guard firstKey <= last, last < argc else { return [] }
        return Array(stride(from: firstKey, through: last, by: step))
    }
}

/// Every command the upstream knows, learned from its `COMMAND` reply, so that any command's keys
/// and flags are understood without a hand-kept list. Subcommands are named "container|sub".
struct CommandTable {
    private(set) var commands: [CommandName: CommandInfo] = [:]
    private(set) var subcommands: [String: CommandInfo] = [:]
    /// Commands with subcommands: only their requests are looked up in `subcommands` (a lookup
    /// builds a lowercased name, for every request otherwise).
    private var containers: Set<String> = []

    var count: Int { commands.count }
    var allNames: [String] { commands.values.map(\.name) }

    func info(_ name: CommandName) -> CommandInfo? { commands[name] }
    func info(subcommand: String) -> CommandInfo? { subcommands[subcommand.lowercased()] }
    /// The subcommand a request of container `name` names ("object|encoding"), if it is one.
    func subcommand(of name: String, _ args: [[UInt8]]) -> CommandInfo? {
        guard args.count > 1, containers.contains(name) else { return nil }
        return subcommands[name + "|" + String(decoding: args[1], as: UTF8.self).lowercased()]
    }

    /// Whether `name` (lowercase) is a container of subcommands, such as CONFIG or XGROUP.
    func hasSubcommands(_ name: String) -> Bool { containers.contains(name) }

    /// The subcommands of a container command such as CONFIG ("config|get", "config|set" …).
    func subcommands(of name: String) -> [CommandInfo] {
        let prefix = name.lowercased() + "|"
        return subcommands.values.filter { $0.name.hasPrefix(prefix) }
    }

    /// Parses a RESP2 `COMMAND` reply with hiredis's reader. Nil if it is not one.
    init?(commandReply bytes: [UInt8]) {
        guard !bytes.isEmpty, let reader = redisReaderCreate() else { return nil }
        defer { redisReaderFree(reader) }
        let fed = bytes.withUnsafeBufferPointer { b in
            b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { redisReaderFeed(reader, $0, b.count) }
        }
        var raw: UnsafeMutableRawPointer?
        guard fed == REDIS_OK, redisReaderGetReply(reader, &raw) == REDIS_OK, let r = raw else { return nil }
        defer { freeReplyObject(r) }
        let reply = r.assumingMemoryBound(to: redisReply.self).pointee
        guard reply.type == REDIS_REPLY_ARRAY else { return nil }
        for i in 0..<Int(reply.elements) {
            guard let entry = reply.element[i], var info = CommandTable.parse(entry.pointee) else { continue }
            info.tiering = WriteRule.Facts(info)
            commands[CommandName(info.name)] = info
            // Redis 7: element 9 lists subcommands in the same shape.
            if entry.pointee.elements >= 10, let subs = entry.pointee.element[9], subs.pointee.type == REDIS_REPLY_ARRAY {
                for j in 0..<Int(subs.pointee.elements) {
                    if let s = subs.pointee.element[j], var sub = CommandTable.parse(s.pointee) {
                        sub.tiering = WriteRule.Facts(sub)
                        subcommands[sub.name] = sub
                        containers.insert(info.name)
                    }
                }
            }
        }
        if commands.isEmpty { return nil }
    }

    init() {}

    /// One entry of the reply; nil if its shape is not what Redis sends (a module's command, a
    /// server of another kind): that command is then simply not understood, never a crash.
    private static func parse(_ e: redisReply) -> CommandInfo? {
        guard e.type == REDIS_REPLY_ARRAY, e.elements >= 6 else { return nil }
        func element(_ i: Int) -> redisReply? { i < Int(e.elements) ? e.element[i]?.pointee : nil }
        guard let name = element(0).flatMap(text)?.lowercased(),
              let arity = element(1).flatMap(smallInteger), let first = element(3).flatMap(smallInteger),
              let last = element(4).flatMap(smallInteger), let step = element(5).flatMap(smallInteger) else { return nil }
        var info = CommandInfo(name: name, arity: arity, flags: Set(element(2).map(strings) ?? []),
                               firstKey: first, lastKey: last, step: step)
        info.categories = Set((element(6).map(strings) ?? []).map { $0.hasPrefix("@") ? String($0.dropFirst()) : $0 })
        if let specs = element(8), specs.type == REDIS_REPLY_ARRAY {
            info.keySpecs = (0..<Int(specs.elements)).compactMap { i in specs.element[i].flatMap { KeySpec(reply: $0.pointee) } }
        }
        return info
    }
}
