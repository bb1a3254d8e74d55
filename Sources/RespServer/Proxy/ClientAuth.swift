import RESP

/// Who a client is, under `auth-mode proxy`: the user it runs as (an index into
/// `ProxyAuth.users`) and whether it has authenticated.
struct ClientAuth {
    var user = 0
    var authenticated = false
    /// A command was refused inside MULTI: EXEC will abort, as Redis flags the transaction.
    var transactionDirty = false
}

/// What the proxy does with a request before it goes anywhere, under `auth-mode proxy`.
enum AuthVerdict {
    /// Forward it as usual.
    case pass
    /// The proxy answers it in its place among the replies; nothing goes upstream. With
    /// `endsTransaction` (a refused EXEC) the client's transaction is discarded upstream.
    case answer([UInt8], endsTransaction: Bool = false)
    /// Forward these bytes instead (HELLO without its AUTH option).
    case rewrite([UInt8])
    /// RESET: forward it, then authenticate the upstream connection with the proxy's own
    /// credentials again (RESET made it the upstream's default user).
    case reset
}

/// `auth-mode proxy`: the proxy authenticates clients itself against its `requirepass` and
/// `user` lines and checks every request against the user's ACL, with Redis 7.0's replies, before
/// the request reaches the upstream or the tiering path (so a denied key is never looked up
/// below). The upstream only ever sees the proxy's own credentials. One per loop.
final class ProxyAuth {
    /// Users sorted by name (`ACL USERS` order); sessions hold indexes into it.
    let users: [ACLUser]
    private let byName: [String: Int]
    private let defaultUser: Int
    private(set) var space = ACLCommandSpace()
    private var permissions: [ACLPermissions] = []
    /// Per user: every command, key and channel allowed, so a request needs no look-up at all.
    private var unrestricted: [Bool]

    init(users: [String: ACLUser]) {
        self.users = users.keys.sorted().map { users[$0]! }
        byName = Dictionary(uniqueKeysWithValues: self.users.enumerated().map { ($1.name, $0) })
        defaultUser = byName["default"]!
        unrestricted = self.users.map { $0.allKeys && $0.allChannels && $0.commandRules == [.all(true)] }
    }

    /// The upstream's command table arrived: categories and subcommands can be resolved.
    func tableLoaded(_ table: CommandTable, logging: Bool = false) {
        space = ACLCommandSpace(table)
        permissions = users.map { ACLPermissions($0, space: space, logging: logging) }
        unrestricted = permissions.map { $0.allowsEverything && $0.user.allKeys && $0.user.allChannels }
    }

    /// A new connection (and RESET): the default user, authenticated if it needs no password.
    func initialState() -> ClientAuth {
        let d = users[defaultUser]
        return ClientAuth(user: defaultUser, authenticated: d.enabled && d.nopass)
    }

    /// The verdict on one request. `args` copies its arguments (only asked for when needed).
    func judge(_ frame: RequestFrame, _ state: inout ClientAuth, inTransaction: Bool,
               args: () -> [[UInt8]]) -> AuthVerdict {
        let name = frame.name
        if name == Commands.auth { return auth(args(), &state, inTransaction: inTransaction) }
        if name == Commands.hello { return hello(args(), &state, inTransaction: inTransaction) }
        if name == Commands.quit { return .pass }
        if state.authenticated && unrestricted[state.user] && !state.transactionDirty && name != Commands.acl
            && name != Commands.reset { return .pass }
        if name == Commands.tiers {
            // Not a Redis command: it shows and moves any key, so it needs a user allowed every command and key.
            if !state.authenticated { return refuse(ProxyAuth.noAuth, frame, &state, inTransaction) }
            let u = users[state.user]
            if u.allKeys && (permissions.isEmpty ? u.commandRules == [.all(true)] : permissions[state.user].allowsEverything) {
                return .pass
            }
            return refuse(ProxyAuth.noPermCommand("tiers"), frame, &state, inTransaction)
        }
        if space.isEmpty { return beforeTable(frame, &state, inTransaction) }
        // Unknown commands, unknown subcommands and wrong arities: Redis refuses them before it
        // asks who the client is, and so does the upstream. A command the upstream learned since
        // its table was read (a module loaded later) goes on only for a user allowed everything.
        var sub: [[UInt8]]?
        guard let id = space.resolve(name, argc: frame.argc, subcommand: { sub = args(); return sub![1] }) else {
            if space.id(name) != nil || (state.authenticated && permissions[state.user].allowsEverything) { return .pass }
            return refuse(ProxyAuth.unknownCommand(sub ?? args()), frame, &state, inTransaction)
        }
        let entry = space.entries[id]
        if entry.noAuth {
            if name == Commands.reset { state = initialState(); return .reset }
            return .pass
        }
        if !state.authenticated { return refuse(ProxyAuth.noAuth, frame, &state, inTransaction) }
        let perms = permissions[state.user]
        if !perms.allows(id) { return refuse(ProxyAuth.noPermCommand(entry.fullName), frame, &state, inTransaction) }
        let u = perms.user
        let checksKeys = !u.allKeys && !entry.keySpecs.isEmpty
        let checksChannels: Bool
        if case .none = entry.channels { checksChannels = false } else { checksChannels = !u.allChannels }
        if checksKeys || checksChannels || name == Commands.acl {
            let a = sub ?? args()
            if checksKeys && !perms.allowsKeys(entry, a) { return refuse(ProxyAuth.noPermKeys, frame, &state, inTransaction) }
            if checksKeys, let message = perms.sortPatternRefusal(entry, a) {
                // Redis answers this when SORT runs (inside MULTI: in EXEC's reply); the proxy at once.
                return refuse(ProxyAuth.error("ERR " + message), frame, &state, inTransaction)
            }
            if checksChannels && !perms.allowsChannels(entry, a) { return refuse(ProxyAuth.noPermChannels, frame, &state, inTransaction) }
            if name == Commands.acl { return acl(entry.fullName, state) }
        }
        if (name == Commands.exec || name == Commands.discard) && state.transactionDirty && inTransaction {
            state.transactionDirty = false
            return name == Commands.exec ? .answer(ProxyAuth.execAbortPrevious, endsTransaction: true) : .pass
        }
        return .pass
    }

    /// Until the upstream's COMMAND reply is read, only an unrestricted user's requests can be judged.
    private func beforeTable(_ frame: RequestFrame, _ state: inout ClientAuth, _ inTransaction: Bool) -> AuthVerdict {
        if frame.name == Commands.reset { state = initialState(); return .reset }
        if !state.authenticated { return refuse(ProxyAuth.noAuth, frame, &state, inTransaction) }
        let u = users[state.user]
        if u.allKeys && u.allChannels && u.commandRules == [.all(true)] { return .pass }
        return .answer(ReplyParts.errorReply("ERR tierproxy: the upstream's command table is not read yet; ACL rules cannot be checked"))
    }

    /// A refusal as Redis's `rejectCommand` makes it: inside MULTI it flags the transaction,
    /// and a refused EXEC is an EXECABORT that ends the transaction.
    private func refuse(_ reply: [UInt8], _ frame: RequestFrame, _ state: inout ClientAuth, _ inTransaction: Bool) -> AuthVerdict {
        if frame.name == Commands.exec {
            state.transactionDirty = false
            let reason = reply.dropFirst().prefix { $0 != 13 }
            return .answer(Array("-EXECABORT Transaction discarded because of: ".utf8) + reason + [13, 10], endsTransaction: true)
        }
        if inTransaction { state.transactionDirty = true }
        return .answer(reply)
    }

    // MARK: - AUTH, HELLO, ACL

    private func auth(_ args: [[UInt8]], _ state: inout ClientAuth, inTransaction: Bool) -> AuthVerdict {
        guard args.count >= 2 else { return .answer(ProxyAuth.error("ERR wrong number of arguments for 'auth' command")) }
        guard args.count <= 3 else { return .answer(ProxyAuth.error("ERR syntax error")) }
        if inTransaction { return notInTransaction(&state) }
        if args.count == 2 && users[defaultUser].nopass {
            return .answer(ProxyAuth.error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"))
        }
        let user = args.count == 2 ? "default" : String(decoding: args[1], as: UTF8.self)
        return authenticate(user, args[args.count - 1], &state) ? .answer(Array("+OK\r\n".utf8)) : .answer(ProxyAuth.wrongPass)
    }

    private func authenticate(_ user: String, _ password: [UInt8], _ state: inout ClientAuth) -> Bool {
        guard let i = byName[user], users[i].accepts(password) else { return false }
        state.user = i
        state.authenticated = true
        return true
    }

    /// HELLO's options in Redis 7.0's order: the version first, then AUTH (checked here, never
    /// sent on) and SETNAME (sent on); the HELLO the upstream gets carries no AUTH.
    private func hello(_ args: [[UInt8]], _ state: inout ClientAuth, inTransaction: Bool) -> AuthVerdict {
        if args.count >= 2 {
            guard let version = strictInteger(args[1]) else {
                return .answer(ProxyAuth.error("ERR Protocol version is not an integer or out of range"))
            }
            guard version == 2 || version == 3 else { return .answer(ProxyAuth.error("NOPROTO unsupported protocol version")) }
        }
        var forwarded = Array(args.prefix(2))
        var sawAuth = false
        var j = 2
        while j < args.count {
            let more = args.count - 1 - j
            let option = String(decoding: args[j], as: UTF8.self)
            if option.lowercased() == "auth" && more >= 2 {
                if inTransaction { return notInTransaction(&state) }
                sawAuth = true
                if !authenticate(String(decoding: args[j + 1], as: UTF8.self), args[j + 2], &state) { return .answer(ProxyAuth.wrongPass) }
                j += 3
            } else if option.lowercased() == "setname" && more >= 1 {
                forwarded += args[j...j + 1]
                j += 2
            } else {
                return .answer(ProxyAuth.error("ERR Syntax error in HELLO option '\(option)'"))
            }
        }
        if !state.authenticated {
            return .answer(ProxyAuth.error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"))
        }
        guard sawAuth else { return .pass }
        var bytes = [UInt8]()
        RESPWriter.command(forwarded, into: &bytes)
        return .rewrite(bytes)
    }

    /// Redis queues AUTH inside MULTI and runs it at EXEC; the proxy does not switch users
    /// inside a transaction: the command is refused and the transaction will abort.
    private func notInTransaction(_ state: inout ClientAuth) -> AuthVerdict {
        state.transactionDirty = true
        return .answer(ProxyAuth.error("ERR tierproxy: AUTH inside MULTI is not supported with auth-mode proxy"))
    }

    /// ACL subcommands: the proxy's own users answer WHOAMI, USERS and LIST; CAT, GENPASS and
    /// HELP are the upstream's; anything that would read or change the upstream's users is refused.
    private func acl(_ fullName: String, _ state: ClientAuth) -> AuthVerdict {
        var out = [UInt8]()
        switch fullName {
        case "acl|whoami":
            RESPWriter.bulk(users[state.user].name, into: &out)
        case "acl|users":
            RESPWriter.arrayHeader(users.count, into: &out)
            for u in users { RESPWriter.bulk(u.name, into: &out) }
        case "acl|list":
            RESPWriter.arrayHeader(users.count, into: &out)
            for u in users { RESPWriter.bulk(u.description, into: &out) }
        case "acl|cat", "acl|genpass", "acl|help":
            return .pass
        default:
            let sub = fullName.split(separator: "|").last.map { $0.uppercased() } ?? fullName
            return .answer(ProxyAuth.error("ERR tierproxy: ACL \(sub) is not available with auth-mode proxy: users are the proxy's 'user' lines"))
        }
        return .answer(out)
    }

    // MARK: - Redis 7.0's words

    static let noAuth = Array("-NOAUTH Authentication required.\r\n".utf8)
    static let wrongPass = Array("-WRONGPASS invalid username-password pair or user is disabled.\r\n".utf8)
    static let noPermKeys = Array("-NOPERM this user has no permissions to access one of the keys used as arguments\r\n".utf8)
    static let noPermChannels = Array("-NOPERM this user has no permissions to access one of the channels used as arguments\r\n".utf8)
    static let execAbortPrevious = Array("-EXECABORT Transaction discarded because of previous errors.\r\n".utf8)
    static func noPermCommand(_ fullName: String) -> [UInt8] {
        error("NOPERM this user has no permissions to run the '\(fullName)' command")
    }
    private static func error(_ message: String) -> [UInt8] { Array("-\(message)\r\n".utf8) }

    /// Redis's "unknown command" refusal: the name and the first arguments, up to 128 bytes,
    /// newlines made spaces (`rejectCommandFormat`).
    static func unknownCommand(_ args: [[UInt8]]) -> [UInt8] {
        var shown = [UInt8]()
        for a in args.dropFirst() where shown.count < 128 {
            shown += [39] + a.prefix(128 - shown.count) + [39, 32]
        }
        let text = Array("-ERR unknown command '".utf8) + args[0].prefix(128) + Array("', with args beginning with: ".utf8) + shown
        return text.map { $0 == 13 || $0 == 10 ? 32 : $0 } + [13, 10]
    }
}

/// Redis's `string2ll`: an optional '-', no leading zeros, no spaces, within Int64.
private func strictInteger(_ bytes: [UInt8]) -> Int64? {
    guard !bytes.isEmpty, bytes.count <= 20 else { return nil }
    if bytes == [UInt8(ascii: "0")] { return 0 }
    var digits = bytes[...]
    let negative = digits.first == UInt8(ascii: "-")
    if negative { digits = digits.dropFirst() }
    guard let first = digits.first, first >= 49 && first <= 57, digits.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
    return Int64(String(decoding: bytes, as: UTF8.self))
}
