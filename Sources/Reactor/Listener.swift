import CLibevent
import Glibc

/// A listening TCP socket on one loop. With `reusePort`, every loop binds its own socket to the same
/// address and the kernel spreads new connections across them.
public final class Listener {
    private var listener: OpaquePointer?
    private let onAccept: (Int32) -> Void

    public init(loop: EventLoop, address: SocketAddress, reusePort: Bool, backlog: Int32 = 511,
                onAccept: @escaping (_ fd: Int32) -> Void) throws {
        self.onAccept = onAccept
        var flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC
        if reusePort { flags |= LEV_OPT_REUSEABLE_PORT }
        // IPv6 sockets accept only IPv6, as Redis's do: "bind * -::*" means two sockets.
        if address.storage.ss_family == sa_family_t(AF_INET6) { flags |= LEV_OPT_BIND_IPV6ONLY }
        listener = address.withSockaddr { sa, len in
            evconnlistener_new_bind(loop.base, listenerTrampoline, Unmanaged.passUnretained(self).toOpaque(),
                                    UInt32(flags), backlog, sa, Int32(len))
        }
        if listener == nil {
            throw ReactorError("cannot listen on \(address): \(String(cString: strerror(errno)))")
        }
    }

    /// The port actually bound (useful when asked for port 0).
    public var boundPort: Int {
        guard let l = listener else { return 0 }
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let fd = evconnlistener_get_fd(l)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard rc == 0 else { return 0 }
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
    }

    /// Stops accepting and closes the socket.
    public func close() {
        if let l = listener { evconnlistener_free(l) }
        listener = nil
    }


    deinit { close() }

    fileprivate func accepted(_ fd: Int32) { onAccept(fd) }
}

private func listenerTrampoline(_ l: OpaquePointer?, _ fd: Int32, _ sa: UnsafeMutablePointer<sockaddr>?,
                                _ len: Int32, _ arg: UnsafeMutableRawPointer?) {
    Unmanaged<Listener>.fromOpaque(arg!).takeUnretainedValue().accepted(fd)
}
