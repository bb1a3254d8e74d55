import CLibevent

/// A small HTTP/1.1 server on one loop (libevent's `evhttp`), for the metrics and health
/// endpoints: GET and HEAD only, every request answered at once by `handler` from the path.
public final class HTTPServer {
    public struct Response {
        public var status: Int32
        public var contentType: String
        public var body: [UInt8]
        public init(status: Int32, contentType: String, body: [UInt8]) {
            self.status = status; self.contentType = contentType; self.body = body
        }
    }

    private let http: OpaquePointer
    private let handler: (String) -> Response
    /// The port bound (useful when 0 was asked for).
    public private(set) var port: Int = 0

    public init(loop: EventLoop, host: String, port: Int, handler: @escaping (String) -> Response) throws {
        self.handler = handler
        http = evhttp_new(loop.base)
        evhttp_set_allowed_methods(http, UInt16(EVHTTP_REQ_GET.rawValue | EVHTTP_REQ_HEAD.rawValue))
        evhttp_set_timeout(http, 10)
        guard let handle = evhttp_bind_socket_with_handle(http, host, UInt16(port)) else {
            evhttp_free(http)
            throw ReactorError("cannot listen on \(host):\(port) for the metrics endpoint")
        }
        let fd = evhttp_bound_socket_get_fd(handle)
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &length) }
        }
        self.port = Int(address.ss_family == sa_family_t(AF_INET6)
            ? withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) } }
            : withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) } })
        evhttp_set_gencb(http, httpTrampoline, Unmanaged.passUnretained(self).toOpaque())
    }

    deinit { evhttp_free(http) }

    fileprivate func serve(_ request: OpaquePointer) {
        let uri = evhttp_request_get_evhttp_uri(request)
        let path = uri.flatMap { evhttp_uri_get_path($0) }.map { String(cString: $0) } ?? "/"
        let response = handler(path.isEmpty ? "/" : path)
        let headers = evhttp_request_get_output_headers(request)
        evhttp_add_header(headers, "Content-Type", response.contentType)
        let body = evbuffer_new()
        response.body.withUnsafeBytes { _ = evbuffer_add(body, $0.baseAddress, $0.count) }
        evhttp_send_reply(request, response.status, reason(response.status), body)
        evbuffer_free(body)
    }
}

private func reason(_ status: Int32) -> String {
    switch status {
    case 200: return "OK"
    case 404: return "Not Found"
    case 503: return "Service Unavailable"
    default: return status < 400 ? "OK" : "Error"
    }
}

private func httpTrampoline(_ request: OpaquePointer?, _ arg: UnsafeMutableRawPointer?) {
    guard let request, let arg else { return }
    Unmanaged<HTTPServer>.fromOpaque(arg).takeUnretainedValue().serve(request)
}
