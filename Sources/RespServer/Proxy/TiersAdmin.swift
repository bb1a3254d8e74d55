import RESP
import Tiers

/// `TIERS STATS`, `RULES`, `RESETSTAT` and `CONFIG GET|SET`: the operator's subcommands. Each is
/// planned with `HELLO` (no arguments: it changes nothing) as its upstream request, whose reply
/// shows the connection's protocol, so the answer takes the client's shape: a map in RESP3, a
/// flat array of names and values in RESP2, as Redis's own CONFIG GET does.
enum TiersAdmin {
    static let hello = UpstreamCommands.format(["HELLO"])

    /// `TIERS CONFIG HELP`: the CONFIG lines of `help`.
    static let configHelp = [
        "CONFIG GET <pattern> [<pattern> ...]",
        "    Settings that may change at runtime, matching a glob: " + RuntimeSettings.names.joined(separator: ", ") + ".",
        "CONFIG SET <name> <value> [<name> <value> ...]",
        "    Change them for every loop at once (rules: \"PATTERN policy P [ttl S] [tier T]; ...\").",
    ]

    static let help = [
        "STATS",
        "    Counters of every tier (the fields of INFO tiers) as name/value pairs.",
        "RULES",
        "    The placement rules in force, first match wins; the last line is the default.",
        "RESETSTAT",
        "    Reset the counters INFO tiers, INFO proxy and TIERS STATS report (/metrics stays monotonic).",
    ] + configHelp

    /// The plan for `sub`, or nil when `sub` is not one of these.
    static func plan(_ sub: String, _ args: [[UInt8]], session: ClientSession) -> TiersCommand.Plan? {
        let text = args.map { String(decoding: $0, as: UTF8.self) }
        func shaped(_ make: @escaping (_ resp3: Bool) -> [UInt8]) -> TiersCommand.Plan {
            TiersCommand.Plan(upstreamCommand: hello, handler: { [session] reply, slot in
                session.fill(slot, make(reply.first == UInt8(ascii: "%")))
            })
        }
        func fixed(_ reply: [UInt8]) -> TiersCommand.Plan { shaped { _ in reply } }
        let worker = session.worker
        switch sub {
        case "stats":
            guard args.count == 2 else { return fixed(arity("stats")) }
            return shaped { resp3 in
                let t = worker.proxyMetrics.sinceReset()
                return pairs(InfoSections.tiersFields(worker, t), resp3: resp3)
            }
        case "rules":
            guard args.count == 2 else { return fixed(arity("rules")) }
            let rules = worker.tiering.rules.rules.map(RuntimeSettings.describe)
                + [RuntimeSettings.describe(.fallback) + " (default)"]
            return fixed(TiersCommand.arrayReply(rules.map { Array($0.utf8) }))
        case "resetstat":
            guard args.count == 2 else { return fixed(arity("resetstat")) }
            worker.proxyMetrics.resetStats()
            return fixed(Array("+OK\r\n".utf8))
        case "config":
            let op = args.count > 2 ? text[2].lowercased() : ""
            switch op {
            case "get":
                guard args.count >= 4 else { return fixed(arity("config|get")) }
                let patterns = args[3...].map { GlobPattern(Array(String(decoding: $0, as: UTF8.self).lowercased().utf8)) }
                return shaped { resp3 in
                    let settings = worker.tiering.settings
                    let matched = RuntimeSettings.names.filter { name in patterns.contains { $0.matches(Array(name.utf8)) } }
                    return pairs(matched.map { ($0, settings.get($0) ?? "") }, resp3: resp3)
                }
            case "set":
                guard args.count >= 5 else { return fixed(arity("config|set")) }
                // Redis 7's CONFIG SET with a name left without its value: a syntax error.
                guard (args.count - 3) % 2 == 0 else { return fixed(TiersCommand.errorReply("ERR syntax error")) }
                let pairs = stride(from: 3, to: args.count, by: 2).map { (text[$0], text[$0 + 1]) }
                do { try worker.tiering.settings.set(pairs) } catch {
                    return fixed(TiersCommand.errorReply("ERR \(error)"))
                }
                for (name, value) in pairs { Log.notice("TIERS CONFIG SET \(name.lowercased()) \(value)") }
                return fixed(Array("+OK\r\n".utf8))
            case "help":
                return fixed(TiersCommand.statusLines(configHelp))
            default:
                let shown = args.count > 2 ? String(text[2].prefix(128)) : ""
                if args.count < 3 { return fixed(arity("config")) }
                return fixed(TiersCommand.errorReply("ERR unknown subcommand '\(shown)'. Try TIERS HELP."))
            }
        default:
            return nil
        }
    }

    static func arity(_ sub: String) -> [UInt8] {
        TiersCommand.errorReply("ERR wrong number of arguments for 'tiers|\(sub)' command")
    }

    /// Names and values: a RESP3 map, or a RESP2 flat array, of bulk strings.
    static func pairs(_ fields: [(String, String)], resp3: Bool) -> [UInt8] {
        if !resp3 { return TiersCommand.arrayReply(fields.flatMap { [Array($0.0.utf8), Array($0.1.utf8)] }) }
        var out = Array("%\(fields.count)\r\n".utf8)
        for (k, v) in fields {
            for s in [k, v] { out += Array("$\(s.utf8.count)\r\n\(s)\r\n".utf8) }
        }
        return out
    }
}
