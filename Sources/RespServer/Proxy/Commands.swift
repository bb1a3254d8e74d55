import RESP

/// The command names the proxy itself reacts to; everything else is only forwarded.
enum Commands {
    static let monitor = CommandName("monitor")
    static let client = CommandName("client")
    static let quit = CommandName("quit")
    static let subscribeFamily: Set<CommandName> = [CommandName("subscribe"), CommandName("psubscribe"),
                                                    CommandName("ssubscribe")]
    static let unsubscribeFamily: Set<CommandName> = [CommandName("unsubscribe"), CommandName("punsubscribe"),
                                                      CommandName("sunsubscribe")]
    static let tiers = CommandName("tiers")
    static let info = CommandName("info")
    static let select = CommandName("select")
    static let reset = CommandName("reset")
    static let get = CommandName("get")
    static let mget = CommandName("mget")
    static let multi = CommandName("multi")
    static let exec = CommandName("exec")
    static let discard = CommandName("discard")
    static let script = CommandName("script")
    static let function = CommandName("function")
    static let auth = CommandName("auth")
    static let hello = CommandName("hello")
    static let acl = CommandName("acl")
    static let watch = CommandName("watch")
    static let unwatch = CommandName("unwatch")
}
