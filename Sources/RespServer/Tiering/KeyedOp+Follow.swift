import RESP
import Tiers

/// A client's pipelined write of a key, after its command of that key that waits in a
/// `KeyBatch`: it goes in the same transaction, right after that command (`KeyedOp.follow`).
/// Only its request, as the client sent it, and its plan are kept: a pipeline of writes of one
/// big hash is hundreds of these per transaction, and each costs what reading, sending and
/// answering it must, no more.
struct Follower {
    /// RESP, forwarded as it is.
    let request: [UInt8]
    let plan: TieredCommand.KeyedPlan

    /// Its arguments, read back from `request`: only when it must run as a command of its own.
    var args: [[UInt8]] { (ReplyParts.elements(request) ?? []).map { (ReplyParts.bulk($0) ?? nil) ?? [] } }
}

/// A follower's plan, kept for the client's next request: if that is the same command with as
/// many arguments, and the command's plan depends on nothing else (`KeyedOp.learnPlan`), it is
/// its plan too, and the request is not routed again.
struct RepeatedPlan {
    let name: CommandName
    let argc: Int
    let plan: TieredCommand.KeyedPlan
}

extension KeyedOp {
    /// The client's request right after this command (and its followers so far) follows it into
    /// its batch, if the batch still takes members and the request could have led or joined one
    /// of the key (`batchKey`: what it asks of the session holds already, this command having
    /// asked it with nothing of the client's in between). `frame`: the request, at the front of
    /// the client's input; `routed`: its arguments, if its plan was just worked out from them
    /// (nil: it is `repeatedPlan`). False: nothing was done.
    func follow(_ frame: RequestFrame, _ plan: TieredCommand.KeyedPlan, routed: [[UInt8]]?) -> Bool {
        guard let batch = gathering, batch.hasRoom, plan.capture == batch.capture, !plan.written.isEmpty,
              !plan.promotesApart, !plan.runsAlone, !plan.script, session.onSharedRoute,
              session.watchedKeys.isEmpty else { return false }
        let key = batch.key
        let request = frame.inlineArgs.map(ReplyParts.command) ?? session.requestBytes(frame)
        func isKey(_ k: TieredCommand.KeyArg) -> Bool {
            (k.db ?? db) == key.db && session.argument(frame, k.index, in: request, is: key.bytes)
        }
        guard plan.written.allSatisfy(isKey), plan.bringUp.allSatisfy(isKey),
              plan.defaultTTL == .never || core.rules.rule(for: key.bytes).ttlSeconds == nil else { return false }
        followers.append(Follower(request: request, plan: plan))
        batch.followed()
        if let routed { learnPlan(frame.name, routed, plan) }
        return true
    }

    /// The plan of the client's next request if it is the same command as the last follower's,
    /// with as many arguments (and such a command's plan depends on nothing else).
    func repeatedPlan(_ name: CommandName, argc: Int) -> TieredCommand.KeyedPlan? {
        guard let r = repeated, r.name == name, r.argc == argc else { return nil }
        return r.plan
    }

    /// Keeps `plan` for the client's next requests of the same command and length, if their plan
    /// cannot differ (`planDependsOnLengthAlone`).
    func learnPlan(_ name: CommandName, _ args: [[UInt8]], _ plan: TieredCommand.KeyedPlan) {
        let reusable = KeyedOp.planDependsOnLengthAlone(name, table: session.commandTable)
        repeated = reusable ? RepeatedPlan(name: name, argc: args.count, plan: plan) : nil
    }

    /// Whether what `TieredCommand.route` makes of a request of command `name` depends on its
    /// length alone: a command described by `WriteRule` (not by hand: SET's
    /// options decide what it reads), not a container of subcommands, no script, not blocking,
    /// every key found at a fixed index or range (not after a keyword or a count), none of
    /// WriteRule's special cases (SORT's STORE, RESTORE's REPLACE, MOVE's db).
    static func planDependsOnLengthAlone(_ name: CommandName, table: CommandTable) -> Bool {
        guard !TieredCommand.names.contains(name), let info = table.info(name), !table.hasSubcommands(info.name),
              WriteRule.kind(info) == .keyed, !WriteRule.isScript(info.name),
              info.name != "sort" && info.name != "restore" && info.name != "move" else { return false }
        return info.keySpecs.allSatisfy(foundByPosition)
    }

    private static func foundByPosition(_ spec: KeySpec) -> Bool {
        guard spec.isKey else { return true }
        if case .index = spec.begin, case .range = spec.find { return true }
        return false
    }

    /// This command's requests, its own and its followers', in order, as RESP.
    var requests: [UInt8] {
        var all = ReplyParts.command(args)
        for f in followers { all += f.request }
        return all
    }

    /// This command, then each follower as a command of its own, to run one at a time (its
    /// batch could not run them together); the last one's answer lets the client's later
    /// requests go.
    func unfollowed() -> [KeyedOp] {
        guard !followers.isEmpty else { return [self] }
        let ops = followers.map { KeyedOp(session: session, args: $0.args, plan: $0.plan, access: access, done: {}) }
        followers = []
        handSent(to: ops[ops.count - 1])
        return [self] + ops
    }
}
