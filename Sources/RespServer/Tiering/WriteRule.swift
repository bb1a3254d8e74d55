import RESP

/// The rule for every command the string table in `TieredCommand` does not describe (docs/semantics.md
/// "Every write path"): what the upstream's `COMMAND` reply says a command does decides how it is
/// tiered. Keys come from its key specifications (scripts' and functions' from `numkeys`):
///
/// - a command Redis flags `write` has the state of every key it may change captured with it and
///   copied below, whatever its type (`KeyCapture`);
/// - keys it reads (or removes: its reply says whether they existed) are brought up first, so it
///   runs on what the client wrote even after hot lost it;
/// - a command that cannot run inside MULTI (`no_multi`) runs alone once its keys are up, and its
///   written keys are recorded in the key log once it answered, so the flusher copies what hot
///   holds then (`KeyedPlan.runsAlone`); a blocking command has the keys that may live below
///   brought up, then runs as sent, and what a blocking write took is captured once it
///   answered (`TieredCommand.Route.blocking`, `BlockingRun`, `BlockedWrite`).
enum WriteRule {
    /// How a command outside the string table is tiered, before its arguments are looked at.
    enum Kind {
        /// No keys: hot alone.
        case none
        /// Keys brought up and/or written keys captured: `plan` decides per request.
        case keyed
        /// As `keyed`, but it runs alone (`KeyedPlan.runsAlone`).
        case alone
        /// A command that may block: `TieredCommand.Route.blocking`, unless this request cannot
        /// block (XREAD/XREADGROUP without BLOCK).
        case blocking
    }

    /// Categories of the commands whose keys are strings (what they write is a string or absent
    /// afterwards, so `GET` reads it), unless the command is also of a category of any type.
    private static let strings: Set<String> = ["string", "bitmap", "hyperloglog"]
    private static let anyType: Set<String> = ["keyspace", "scripting"]

    /// What `kind` and `plan` ask of a command's entry on every request, worked out once
    /// (`CommandInfo.tiering`): each is a lookup in a set of strings otherwise.
    struct Facts {
        let kind: Kind
        let isWrite: Bool
        let isScript: Bool
        let capture: KeyCapture

        init(_ info: CommandInfo) {
            kind = WriteRule.kind(info)
            isWrite = info.isWrite
            isScript = WriteRule.isScript(info.name)
            let stringKeys = !info.categories.isDisjoint(with: strings) && info.categories.isDisjoint(with: anyType)
            capture = stringKeys && !isScript ? .string : .dump
        }
    }

    static func facts(_ info: CommandInfo) -> Facts { info.tiering ?? Facts(info) }

    static func kind(_ info: CommandInfo) -> Kind {
        if let known = info.tiering { return known.kind }
        let scripted = isScript(info.name)
        guard !info.keySpecs.isEmpty || scripted || info.name == "sort" || info.name == "sort_ro" else { return .none }
        if info.flags.contains("blocking") && !scripted {
            // Blocking commands run as sent, as direct: a blocked command must not hold its
            // keys, nor its client's later requests (`TieredCommand.route`).
            return .blocking
        }
        let alone = info.isWrite && info.flags.contains("no_multi") && !scripted
        return alone ? .alone : .keyed
    }

    /// The plan for one request (`args`: name first). Nil when the request is malformed in a way
    /// Redis itself rejects (hot answers it alone).
    static func plan(_ info: CommandInfo, _ args: [[UInt8]], scripts: ScriptFlags) -> TieredCommand.KeyedPlan? {
        guard info.arity > 0 ? args.count == info.arity : args.count >= -info.arity else { return nil }
        let facts = facts(info)
        var plan = TieredCommand.KeyedPlan()
        let writes = facts.isWrite || (facts.isScript && scripts.mayWrite(info.name, args))
        for spec in info.keySpecs where spec.isKey {
            for i in spec.keyIndexes(args) {
                let key = TieredCommand.KeyArg(index: i)
                if spec.reads || facts.isScript { plan.bringUp.append(key) }
                if writes && (spec.writes || facts.isScript) { plan.written.append(key) }
            }
        }
        switch info.name {
        case "sort", "sort_ro":
            // STORE's position is known only to SORT's own parser; BY/GET patterns are not keys
            // the proxy can know (documented).
            if info.name == "sort", let i = storeIndex(args) { plan.written.append(TieredCommand.KeyArg(index: i)) }
        case "restore":
            // Without REPLACE, RESTORE answers BUSYKEY for a key that exists: below counts too.
            if !args.dropFirst(4).contains(where: { asciiCaseEqual($0, "replace") }) {
                plan.bringUp.append(TieredCommand.KeyArg(index: 1))
            }
        case "move":
            guard args.count == 3, let db = Int(String(decoding: args[2], as: UTF8.self)), db >= 0 else { return nil }
            let destination = TieredCommand.KeyArg(index: 1, db: db)
            plan.bringUp.append(destination)
            plan.written.append(destination)
        default:
            break
        }
        if facts.isWrite && plan.written.isEmpty && info.name != "sort" {
            // A write whose key specs call every key read-only still changes them (XREADGROUP
            // moves its group's last id and pending entries): what it reads is what it writes.
            plan.written = plan.bringUp
        }
        plan.script = facts.isScript
        plan.capture = facts.capture
        plan.runsAlone = facts.kind == .alone
        return plan.bringUp.isEmpty && plan.written.isEmpty ? nil : plan
    }

    static func isScript(_ name: String) -> Bool {
        name == "eval" || name == "evalsha" || name == "eval_ro" || name == "evalsha_ro"
            || name == "fcall" || name == "fcall_ro"
    }

    /// The index of the key after SORT's STORE, if any.
    private static func storeIndex(_ args: [[UInt8]]) -> Int? {
        var i = 2
        while i < args.count {
            if asciiCaseEqual(args[i], "store") { return i + 1 < args.count ? i + 1 : nil }
            i += 1
        }
        return nil
    }
}
