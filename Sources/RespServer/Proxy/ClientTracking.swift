/// Whether a client has `CLIENT TRACKING` on, as its requests tell: `CLIENT TRACKING on …` turns
/// it on (even if Redis then refuses it: the cautious side), `CLIENT TRACKING off` and `RESET`
/// turn it off. While it is on, the proxy's own reads stay off the client's connection
/// (`OwnRequests`).
struct ClientTracking {
    private(set) var on = false

    /// `CLIENT TRACKING <mode> …` was sent.
    mutating func requested(mode: String) {
        switch mode.lowercased() {
        case "on": on = true
        case "off": on = false
        default: break
        }
    }

    /// `RESET` was sent.
    mutating func reset() { on = false }
}
