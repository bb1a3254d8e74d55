import Glibc
import Reactor

extension HTTPClient {
    private final class Registry {
        var lock = pthread_mutex_t()
        var clients = [ObjectIdentifier: (loop: Weak, client: HTTPClient)]()
        init() { pthread_mutex_init(&lock, nil) }
    }
    private final class Weak { weak var loop: EventLoop?; init(_ l: EventLoop) { loop = l } }
    nonisolated(unsafe) private static let registry = Registry()

    /// The one client of `loop` (made with `options` on first use): every tier on a loop shares
    /// its multi handle and so its connections.
    public static func forLoop(_ loop: EventLoop, options: HTTPClientOptions = HTTPClientOptions()) -> HTTPClient {
        let r = registry
        pthread_mutex_lock(&r.lock)
        defer { pthread_mutex_unlock(&r.lock) }
        let id = ObjectIdentifier(loop)
        if let e = r.clients[id], e.loop.loop === loop { return e.client }
        let c = HTTPClient(loop: loop, options: options)
        r.clients[id] = (Weak(loop), c)
        return c
    }
}
