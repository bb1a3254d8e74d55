import Glibc

/// A resolved socket address (IPv4 or IPv6), stored by value.
public struct SocketAddress: CustomStringConvertible {
    var storage = sockaddr_storage()
    var length: socklen_t = 0

    public var description: String {
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var serv = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        var s = storage
        let rc = withUnsafePointer(to: &s) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                getnameinfo($0, length, &host, socklen_t(host.count), &serv, socklen_t(serv.count),
                            NI_NUMERICHOST | NI_NUMERICSERV)
            }
        }
        guard rc == 0 else { return "?" }
        let h = String(cString: host)
        return h.contains(":") ? "[\(h)]:\(String(cString: serv))" : "\(h):\(String(cString: serv))"
    }

    /// Resolves `host:port` with getaddrinfo. Blocking: call it before loops start or off-loop.
    public static func resolve(host: String, port: Int, passive: Bool = false) throws -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        if passive { hints.ai_flags = AI_PASSIVE }
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host.isEmpty ? nil : host, String(port), &hints, &res)
        guard rc == 0, let first = res else {
            throw ReactorError("cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(first) }
        var out = [SocketAddress]()
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let ai = p {
            var a = SocketAddress()
            memcpy(&a.storage, ai.pointee.ai_addr, Int(ai.pointee.ai_addrlen))
            a.length = ai.pointee.ai_addrlen
            out.append(a)
            p = ai.pointee.ai_next
        }
        return out
    }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var s = storage
        return withUnsafePointer(to: &s) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }
}

/// An error from the reactor layer, with a message a person can act on.
public struct ReactorError: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}
