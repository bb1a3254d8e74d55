import RESP
import Tiers

/// `TIERS …`, answered by the proxy in its place among the client's replies, and the `# Tiers`
/// section appended to `INFO`. Each TIERS subcommand sends one cheap request upstream on the
/// client's own route (EXISTS for WHERE, PING otherwise), so its reply is ordered like any other.
enum TiersCommand {
    // Handlers hold their session strongly: a lookup may finish after the client left, and
    // `fill` on a closed session does nothing.
    struct Plan {
        let upstreamCommand: [UInt8]
        let handler: ReplyHandler
    }

    static let help = [
        "TIERS <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "WHERE <key>",
        "    Return the tiers that hold <key> in the current database: hot, warm, cold.",
        "CHECK",
        "    Connect to each configured lower tier with its credentials; one line per tier.",
    ] + TiersAdmin.help + [
        "HELP",
        "    Print this help.",
    ]

    static func plan(_ args: [[UInt8]], session: ClientSession) -> Plan {
        let sub = args.count > 1 ? String(decoding: args[1], as: UTF8.self).lowercased() : ""
        let ping = UpstreamCommands.format(["PING"])
        func answer(_ reply: [UInt8]) -> Plan {
            Plan(upstreamCommand: ping, handler: { [session] _, slot in session.fill(slot, reply) })
        }
        if args.count < 2 {
            return answer(errorReply("ERR wrong number of arguments for 'tiers' command"))
        }
        switch sub {
        case "where":
            guard args.count == 3 else { return answer(errorReply("ERR wrong number of arguments for 'tiers|where' command")) }
            let key = args[2]
            var exists = [UInt8]()
            RESPWriter.command([Array("EXISTS".utf8), key], into: &exists)
            return Plan(upstreamCommand: exists, handler: { [session] reply, slot in
                locate(key: key, hotReply: reply, session: session) { session.fill(slot, $0) }
            })
        case "check":
            guard args.count == 2 else { return answer(errorReply("ERR wrong number of arguments for 'tiers|check' command")) }
            return Plan(upstreamCommand: ping, handler: { [session] _, slot in
                let w = session.worker
                TierStatus.check(warm: w.warm, cold: w.cold, config: w.tierSetup.config) { results in
                    session.fill(slot, arrayReply(results.map { Array($0.line.utf8) }))
                }
            })
        case "help":
            return answer(statusLines(help))
        default:
            if let plan = TiersAdmin.plan(sub, args, session: session) { return plan }
            let shown = String(decoding: args[1].prefix(128), as: UTF8.self)
            return answer(errorReply("ERR unknown subcommand '\(shown)'. Try TIERS HELP."))
        }
    }

    /// Hot answered EXISTS; asks warm and cold at once and lists every tier that has the key.
    private static func locate(key: [UInt8], hotReply: [UInt8], session: ClientSession,
                              _ done: @escaping ([UInt8]) -> Void) {
        if hotReply.first == UInt8(ascii: "-") { done(hotReply); return }   // NOAUTH etc.: Redis judges
        let inHot = hotReply.starts(with: Array(":1".utf8))
        let tierKey = TierKey(db: session.db, key)
        let tiers: [(String, Tier?)] = [("warm", session.worker.warm), ("cold", session.worker.cold)]
        var found: [String?] = [nil, nil]
        var failure: String?
        var remaining = tiers.count
        func finish() {
            remaining -= 1
            guard remaining == 0 else { return }
            if let failure { done(errorReply("ERR tierproxy: \(failure)")); return }
            let names = (inHot ? ["hot"] : []) + found.compactMap { $0 }
            done(arrayReply(names.map { Array($0.utf8) }))
        }
        // Writes of this pass still queued go first: the answer is about what was written before.
        session.worker.tierAccess?.sendQueuedStores()
        for (i, (name, tier)) in tiers.enumerated() {
            guard let tier else { finish(); continue }
            tier.get(tierKey) { result in
                switch result {
                case .success(let entry): if entry != nil { found[i] = name }
                case .failure(let e): failure = failure ?? "\(name) tier: \(e)"
                }
                finish()
            }
        }
    }

    /// INFO's reply with the proxy's sections added (`InfoSections`).
    static func infoWithTiers(_ reply: [UInt8], sections: [String], worker: Worker) -> [UInt8] {
        InfoSections.amend(reply, sections: sections, worker: worker)
    }

    static func errorReply(_ message: String) -> [UInt8] { ReplyParts.errorReply(message) }

    /// An array of status replies, the shape of Redis's HELP replies (`addReplyHelp`).
    static func statusLines(_ lines: [String]) -> [UInt8] {
        Array("*\(lines.count)\r\n".utf8) + lines.flatMap { Array("+\($0)\r\n".utf8) }
    }

    /// An array of bulk strings (the same bytes as a RESP command with these arguments).
    static func arrayReply(_ items: [[UInt8]]) -> [UInt8] {
        var out = [UInt8]()
        RESPWriter.command(items, into: &out)
        return out
    }
}
