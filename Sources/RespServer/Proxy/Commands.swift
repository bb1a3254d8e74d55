import RESP

/// The command names the proxy itself reacts to; everything else is only forwarded.
enum Commands {
    static let subscribe = CommandName("subscribe")
    static let psubscribe = CommandName("psubscribe")
    static let ssubscribe = CommandName("ssubscribe")
    static let monitor = CommandName("monitor")
    static let client = CommandName("client")
    static let quit = CommandName("quit")
    static let tiers = CommandName("tiers")
    static let info = CommandName("info")
    static let select = CommandName("select")
    static let reset = CommandName("reset")
}
