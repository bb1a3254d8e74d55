import RESP

/// The commands that see the lower tiers, and what each needs: which keys must be brought up
/// from below before hot runs it (it reads them), and which keys' new state must reach the lower
/// tiers after. The string and keyspace commands are described here by hand; every other
/// command by `WriteRule`, from the upstream's `COMMAND` reply.
enum TieredCommand {
    /// How a tiered command is handled.
    enum Route {
        /// GET: sent as is; only a nil reply looks below.
        case get
        /// MGET: sent as is; only its nil positions look below.
        case mget
        /// Keys brought up first and/or written keys synced after: see `KeyedPlan`.
        case keyed(KeyedPlan)
        /// FLUSHDB (db: the client's) or FLUSHALL (every db).
        case flush(all: Bool)
        /// A command that may block (BLPOP, BLMOVE, BZPOPMIN, XREAD … BLOCK, XREADGROUP …):
        /// keys that may live below are brought up first, then it runs on hot as sent, holding
        /// no lock and none of the client's later requests (`BlockingRun`); what a blocking
        /// write took is captured once it answered (`BlockedWrite`).
        case blocking(BlockingPlan)
        /// SWAPDB: hot's databases and the lower tiers' (`DatabaseMap`) swap together.
        case swapdb
        /// SCAN, KEYS, DBSIZE, RANDOMKEY: answered from hot and the lower tiers' listings
        /// (`KeyspaceOp`; hot alone with `tiers-keyspace no`).
        case keyspace(KeyspaceOp.Command)
        /// Refused by the proxy with this error (e.g. `tiers-scripts strict`).
        case refused(String)
    }

    /// When a write gets its rule's default expiry (`rule … ttl SECONDS`).
    enum DefaultTTL {
        case never
        /// The command replaces the key's expiry with none (SET, GETSET, MSET).
        case always
        /// Only if the key did not exist before (INCR, APPEND, SETNX … create it without one).
        case ifCreated
    }

    /// A key argument: its index in the request, and its database when not the client's own.
    struct KeyArg: Equatable {
        var index: Int
        var db: Int?
    }

    /// What a blocking command's keys need: brought up before it is sent, captured after it.
    struct BlockingPlan {
        var bringUp: [KeyArg]
        var written: [KeyArg]
        /// Keys it may delete (key specs flagged `delete`: a pop of the last element).
        var deletes: [KeyArg] = []
    }

    struct KeyedPlan {
        /// Keys hot must hold (if they exist anywhere) before the command runs.
        var bringUp: [KeyArg] = []
        /// Keys whose state after the command is copied to the lower tiers.
        var written: [KeyArg] = []
        var defaultTTL: DefaultTTL = .never
        /// A script or function: it may have written even when it answers an error.
        var script = false
        /// Set when `+OK` alone tells the keys' new state (`BlindWrite`): pipelined, no capture.
        var blind: BlindWrite?
        /// The command cannot run inside MULTI (WATCH): its promotions go before it, alone.
        var promotesApart = false
        /// How the written keys' states are read after it (`KeyCapture`): `GET` after a string
        /// command, `DUMP` after any other.
        var capture: KeyCapture = .string
        /// It cannot run inside MULTI (`no_multi`): after the bring-up its keys' locks go, it
        /// runs alone, and its written keys are recorded in the key log once it answered, so
        /// the flusher copies what hot holds then (`TransactionSync`).
        var runsAlone = false

    }

    private static let simpleReads: Set<CommandName> = Set(["strlen", "type", "ttl", "pttl", "expiretime",
                                                             "pexpiretime"].map { CommandName($0) })
    private static let readModifyWrite: [CommandName: (argc: Int, ttl: DefaultTTL)] = [
        CommandName("incr"): (2, .ifCreated), CommandName("decr"): (2, .ifCreated),
        CommandName("incrby"): (3, .ifCreated), CommandName("decrby"): (3, .ifCreated),
        CommandName("incrbyfloat"): (3, .ifCreated), CommandName("append"): (3, .ifCreated),
        CommandName("setrange"): (4, .ifCreated), CommandName("setnx"): (3, .ifCreated),
        CommandName("getset"): (3, .always), CommandName("getdel"): (2, .never),
        CommandName("persist"): (2, .never),
    ]
    /// Commands of keys of any type: what they leave is read with DUMP.
    private static let anyType: Set<CommandName> = Set(["persist", "rename", "renamenx", "copy"].map { CommandName($0) })
    private static let expireFamily: Set<CommandName> = Set(["expire", "pexpire", "expireat", "pexpireat"].map { CommandName($0) })

    /// How `args` (the whole request, name first) is handled: the string commands below by hand,
    /// every other command by `WriteRule` from what `table` says of it. Nil: not tiered, or
    /// malformed in a way Redis itself will reject (wrong arity), so hot answers it alone.
    static func route(_ name: CommandName, _ args: [[UInt8]], table: CommandTable, scripts: ScriptFlags,
                      strictScripts: Bool) -> Route? {
        if name == setName { return setRoute(args) }  // the commonest write: no table, no switch
        if names.contains(name) { return stringRoute(name, args) }
        guard var info = table.info(name) else { return nil }
        if let sub = table.subcommand(of: info.name, args) { info = sub }
        switch WriteRule.kind(info) {
        case .none:
            return nil
        case .blocking:
            if info.name == "xread" || info.name == "xreadgroup", !args.dropFirst().contains(where: { asciiCaseEqual($0, "block") }) {
                // Without BLOCK it never blocks: tiered as any other read or write.
                return WriteRule.plan(info, args, scripts: scripts).map { .keyed($0) }
            }
            guard let plan = WriteRule.plan(info, args, scripts: scripts) else { return nil }
            // Every key a blocking command names is read (BLMOVE's destination too: RW insert);
            // a read (XREAD … BLOCK) writes nothing.
            let deletes = info.keySpecs.filter { $0.flags.contains("delete") }.flatMap { $0.keyIndexes(args) }
            return .blocking(BlockingPlan(bringUp: plan.bringUp, written: info.isWrite ? plan.written : [],
                                          deletes: deletes.map { KeyArg(index: $0) }))
        case .keyed, .alone:
            if WriteRule.isScript(info.name), args.count > 2, args[2] == Array("0".utf8), scripts.mayWrite(info.name, args) {
                if strictScripts {
                    return .refused("ERR tierproxy: tiers-scripts strict: this script declares no keys and may write; "
                                    + "declare every key it touches in numkeys/KEYS, or flag it no-writes")
                }
                let id = ScriptFlags.identity(info.name, args)
                if scripts.firstWarning(id) {
                    Log.notice("Script \(id) declares no keys and may write: what it writes stays in hot only "
                               + "(tiers-scripts strict refuses such scripts)")
                }
                return nil
            }
            return WriteRule.plan(info, args, scripts: scripts).map { .keyed($0) }
        }
    }

    /// The string commands of issue 4, described by hand (their options decide what they read).
    private static func stringRoute(_ name: CommandName, _ args: [[UInt8]]) -> Route? {
        let argc = args.count
        func key(_ i: Int) -> KeyArg { KeyArg(index: i) }
        switch name.description {
        case "get":
            return argc == 2 ? .get : nil
        case "mget":
            return argc >= 2 ? .mget : nil
        case "set":
            return setRoute(args)
        case "setex", "psetex":
            return argc == 4 ? .keyed(KeyedPlan(written: [key(1)],
                                                blind: BlindWrite.setex(args, millis: name.description == "psetex"))) : nil
        case "mset", "msetnx":
            guard argc >= 3, argc % 2 == 1 else { return nil }
            let keys = stride(from: 1, to: argc, by: 2).map(key)
            let nx = name.description == "msetnx"
            return .keyed(KeyedPlan(bringUp: nx ? keys : [], written: keys, defaultTTL: nx ? .ifCreated : .always,
                                    blind: nx ? nil : BlindWrite.mset(args)))
        case "getex":
            guard argc >= 2 else { return nil }
            return .keyed(KeyedPlan(bringUp: [key(1)], written: argc > 2 ? [key(1)] : []))
        case "getrange":
            return argc == 4 ? .keyed(KeyedPlan(bringUp: [key(1)])) : nil
        case "exists", "touch":
            return argc >= 2 ? .keyed(KeyedPlan(bringUp: (1..<argc).map(key))) : nil
        case "del", "unlink":
            guard argc >= 2 else { return nil }
            let keys = (1..<argc).map(key)
            return .keyed(KeyedPlan(bringUp: keys, written: keys))
        case "rename", "renamenx":
            return argc == 3 ? .keyed(KeyedPlan(bringUp: [key(1), key(2)], written: [key(1), key(2)], capture: .dump)) : nil
        case "copy":
            return copyRoute(args)
        case "watch":
            // Brought up first, so that a promotion after the WATCH cannot fire it.
            return argc >= 2 ? .keyed(KeyedPlan(bringUp: (1..<argc).map(key), promotesApart: true)) : nil
        case "flushdb", "flushall", "swapdb", "scan", "keys", "dbsize", "randomkey":
            return keyspaceRoute(name.description, argc)
        default:
            break
        }
        if simpleReads.contains(name) {
            return argc == 2 ? .keyed(KeyedPlan(bringUp: [key(1)])) : nil
        }
        if let rmw = readModifyWrite[name] {
            return argc == rmw.argc ? .keyed(KeyedPlan(bringUp: [key(1)], written: [key(1)], defaultTTL: rmw.ttl,
                                                       capture: anyType.contains(name) ? .dump : .string)) : nil
        }
        if expireFamily.contains(name) {
            return argc == 3 || argc == 4 ? .keyed(KeyedPlan(bringUp: [key(1)], written: [key(1)], capture: .dump)) : nil
        }
        return nil
    }

    /// The commands of the whole keyspace (of one database, or all), which name no key.
    private static func keyspaceRoute(_ name: String, _ argc: Int) -> Route? {
        switch name {
        case "flushdb", "flushall":
            return .flush(all: name == "flushall")
        case "swapdb":
            return argc == 3 ? .swapdb : nil
        case "scan":
            return argc >= 2 ? .keyspace(.scan) : nil
        case "keys":
            return argc == 2 ? .keyspace(.keys) : nil
        default:   // dbsize, randomkey
            return argc == 1 ? .keyspace(name == "dbsize" ? .dbsize : .randomkey) : nil
        }
    }

    /// `SET k v [options]`: a blind write unless an option makes it read what hot holds.
    private static func setRoute(_ args: [[UInt8]]) -> Route? {
        guard args.count >= 3 else { return nil }
        let options = Set(args[3...].map { String(decoding: $0, as: UTF8.self).uppercased() })
        let reads = !options.isDisjoint(with: ["NX", "XX", "GET", "KEEPTTL"])
        let ownExpiry = !options.isDisjoint(with: ["EX", "PX", "EXAT", "PXAT", "KEEPTTL"])
        let key = KeyArg(index: 1)
        return .keyed(KeyedPlan(bringUp: reads ? [key] : [], written: [key],
                                defaultTTL: ownExpiry ? .never : options.contains("NX") ? .ifCreated : .always,
                                blind: reads ? nil : BlindWrite.set(args)))
    }

    /// `COPY src dst [DB n] [REPLACE]`: the destination may be in another database.
    private static func copyRoute(_ args: [[UInt8]]) -> Route? {
        guard args.count >= 3 else { return nil }
        var db: Int?
        var i = 3
        while i < args.count {
            let option = String(decoding: args[i], as: UTF8.self).uppercased()
            if option == "REPLACE" { i += 1; continue }
            guard option == "DB", i + 1 < args.count, let n = Int(String(decoding: args[i + 1], as: UTF8.self)),
                  n >= 0 else { return nil }
            db = n
            i += 2
        }
        let destination = KeyArg(index: 2, db: db)
        return .keyed(KeyedPlan(bringUp: [KeyArg(index: 1), destination], written: [destination], capture: .dump))
    }

    /// Names worth a look at dispatch (a cheap filter before `route` copies arguments).
    private static let setName = CommandName("set")
    static let names: Set<CommandName> = Set((
        "get mget set setex psetex setnx getset getex getdel mset msetnx append incr incrby incrbyfloat "
        + "decr decrby setrange getrange strlen exists type del unlink expire pexpire expireat pexpireat "
        + "persist ttl pttl expiretime pexpiretime rename renamenx copy touch flushdb flushall watch swapdb "
        + "scan keys dbsize randomkey"
    ).split(separator: " ").map { CommandName(String($0)) })
}
