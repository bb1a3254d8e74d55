import CCurl
import Reactor

/// Settings for one loop's HTTP client.
public struct HTTPClientOptions: Sendable {
    /// PEM bundle of trusted CAs (nil = the system store).
    public var caBundlePath: String?
    /// Certificate and host name verification. Only tests against self-signed emulators turn it off.
    public var verifyTLS = true
    public var connectTimeoutMillis = 5_000
    /// Default per-attempt limit when a request gives none.
    public var requestTimeoutMillis = 30_000
    /// Responses larger than this fail instead of filling memory.
    public var maxResponseBytes = 300 << 20
    /// HTTP/2 over TLS where the server offers it (plain http stays 1.1).
    public var http2 = true
    /// Connections per host (0 = no limit; HTTP/2 multiplexes on fewer).
    public var maxConnectionsPerHost = 0
    /// Idle connections kept for reuse. curl's default follows the number of requests in
    /// flight, so a burst that ends closes the connections the next burst will want again.
    public var maxIdleConnections = 256

    public init() {}
}

/// An HTTP client bound to one `EventLoop`: one curl multi handle whose sockets and timer are
/// driven by the loop, so many requests overlap on one thread and nothing blocks it.
/// Every method must be called on the loop's thread; completions run there too.
public final class HTTPClient {
    public let loop: EventLoop
    public let options: HTTPClientOptions
    let multi: UnsafeMutableRawPointer
    private var watchers = [Int32: FDWatcher]()
    /// Watchers curl dropped during a callback; freed at the next drive, never inside their own callback.
    private var retiredWatchers = [FDWatcher]()
    private var timer: Timer?
    private var idleEasy = [UnsafeMutableRawPointer]()
    private var active = [UnsafeMutableRawPointer: CurlTransfer]()
    private var closed = false

    /// Requests started, and those that ended without a response (counted here, per client).
    public private(set) var started = 0
    public private(set) var transportFailures = 0
    /// Requests in flight right now, and the most ever in flight at once.
    public var inFlight: Int { active.count }
    public private(set) var peakInFlight = 0

    private static let globalInit: Void = { _ = curl_global_init(Int(CURL_GLOBAL_DEFAULT)) }()

    public init(loop: EventLoop, options: HTTPClientOptions = HTTPClientOptions()) {
        _ = HTTPClient.globalInit
        self.loop = loop
        self.options = options
        multi = curl_multi_init()
        let me = Unmanaged.passUnretained(self).toOpaque()
        _ = tp_multi_setopt_socketfn(multi, curlSocketCallback)
        _ = tp_multi_setopt_ptr(multi, CURLMOPT_SOCKETDATA, me)
        _ = tp_multi_setopt_timerfn(multi, curlTimerCallback)
        _ = tp_multi_setopt_ptr(multi, CURLMOPT_TIMERDATA, me)
        _ = tp_multi_setopt_long(multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX)
        _ = tp_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, options.maxIdleConnections)
        if options.maxConnectionsPerHost > 0 {
            _ = tp_multi_setopt_long(multi, CURLMOPT_MAX_HOST_CONNECTIONS, options.maxConnectionsPerHost)
        }
    }

    deinit { close() }

    /// Fails every request in flight and releases curl. Idempotent.
    public func close() {
        if closed { return }
        closed = true
        let pending = active
        active.removeAll()
        for (easy, t) in pending {
            curl_multi_remove_handle(multi, easy)
            curl_easy_cleanup(easy)
            t.finish(.failure(.transport("client closed")))
        }
        for easy in idleEasy { curl_easy_cleanup(easy) }
        idleEasy.removeAll()
        timer?.cancel()
        for w in watchers.values { w.cancel() }
        watchers.removeAll()
        curl_multi_cleanup(multi)
    }

    /// Sends one request (one attempt, no retries) and calls `done` once on the loop.
    public func send(_ request: HTTPRequest, _ done: @escaping (Result<HTTPResponse, HTTPError>) -> Void) {
        if closed { done(.failure(.transport("client closed"))); return }
        let easy = idleEasy.popLast() ?? curl_easy_init()!
        let t = CurlTransfer(easy: easy, maxBytes: options.maxResponseBytes, done: done)
        configure(easy, for: request, transfer: t)
        active[easy] = t
        started += 1
        peakInFlight = max(peakInFlight, active.count)
        let rc = curl_multi_add_handle(multi, easy)
        if rc != CURLM_OK {
            active[easy] = nil
            curl_easy_cleanup(easy)
            transportFailures += 1
            t.finish(.failure(.transport("curl_multi_add_handle: \(String(cString: curl_multi_strerror(rc)))")))
        }
    }

    private func configure(_ easy: UnsafeMutableRawPointer, for request: HTTPRequest, transfer t: CurlTransfer) {
        let me = Unmanaged.passUnretained(t).toOpaque()
        _ = tp_easy_setopt_str(easy, CURLOPT_URL, request.url)
        _ = tp_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
        _ = tp_easy_setopt_ptr(easy, CURLOPT_PRIVATE, me)
        _ = tp_easy_setopt_ptr(easy, CURLOPT_ERRORBUFFER, t.errorBuffer)
        _ = tp_easy_setopt_write(easy, curlWriteCallback)
        _ = tp_easy_setopt_ptr(easy, CURLOPT_WRITEDATA, me)
        _ = tp_easy_setopt_header(easy, curlHeaderCallback)
        _ = tp_easy_setopt_ptr(easy, CURLOPT_HEADERDATA, me)
        _ = tp_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, options.connectTimeoutMillis)
        _ = tp_easy_setopt_long(easy, CURLOPT_TIMEOUT_MS, request.timeoutMillis ?? options.requestTimeoutMillis)
        _ = tp_easy_setopt_long(easy, CURLOPT_TCP_NODELAY, 1)
        _ = tp_easy_setopt_long(easy, CURLOPT_TCP_KEEPALIVE, 1)
        _ = tp_easy_setopt_long(easy, CURLOPT_SSL_VERIFYPEER, options.verifyTLS ? 1 : 0)
        _ = tp_easy_setopt_long(easy, CURLOPT_SSL_VERIFYHOST, options.verifyTLS ? 2 : 0)
        if let ca = options.caBundlePath { _ = tp_easy_setopt_str(easy, CURLOPT_CAINFO, ca) }
        if options.http2 && request.url.hasPrefix("https:") {
            _ = tp_easy_setopt_long(easy, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_2TLS))
            // Wait for an HTTP/2 connection to multiplex on rather than opening one per request.
            // Only over TLS: there ALPN tells at the handshake whether a connection multiplexes.
            // Over plain http a new connection's kind is known only from its first response, so
            // a request would wait behind a first one that hangs (seen: every read of a tier
            // stuck for as long as one hung request lasted).
            _ = tp_easy_setopt_long(easy, CURLOPT_PIPEWAIT, 1)
        } else {
            _ = tp_easy_setopt_long(easy, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_1_1))
        }
        setHeaders(easy, request, t)
        setMethod(easy, request, t)
    }

    /// The request's headers, and none of curl's own that would change what was signed.
    private func setHeaders(_ easy: UnsafeMutableRawPointer, _ request: HTTPRequest, _ t: CurlTransfer) {
        var list: UnsafeMutablePointer<curl_slist>? = nil
        var hasContentType = false
        for (name, value) in request.headers {
            if name.lowercased() == "content-type" { hasContentType = true }
            // "Name;" sends a header with an empty value; "Name:" would remove it.
            list = curl_slist_append(list, value.isEmpty ? "\(name);" : "\(name): \(value)")
        }
        // curl would add its own Content-Type to a body and Expect: 100-continue to large ones;
        // both would break signatures or add a round trip.
        if !hasContentType { list = curl_slist_append(list, "Content-Type:") }
        list = curl_slist_append(list, "Expect:")
        t.headerList = list
        _ = tp_easy_setopt_slist(easy, CURLOPT_HTTPHEADER, list)
    }

    /// The method and, for methods that carry one, the body (copied: curl keeps a pointer).
    private func setMethod(_ easy: UnsafeMutableRawPointer, _ request: HTTPRequest, _ t: CurlTransfer) {
        let method = request.method.uppercased()
        switch method {
        case "GET":
            _ = tp_easy_setopt_long(easy, CURLOPT_HTTPGET, 1)
        case "HEAD":
            _ = tp_easy_setopt_long(easy, CURLOPT_NOBODY, 1)
        default:
            if request.body.isEmpty && (method == "DELETE") {
                _ = tp_easy_setopt_str(easy, CURLOPT_CUSTOMREQUEST, method)
            } else {
                // curl keeps a pointer, so the bytes live in the transfer until it completes.
                let copy = UnsafeMutableRawPointer.allocate(byteCount: max(request.body.count, 1), alignment: 1)
                request.body.withUnsafeBytes { src in
                    if let base = src.baseAddress { copy.copyMemory(from: base, byteCount: src.count) }
                }
                t.requestBody = copy
                _ = tp_easy_setopt_off(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(request.body.count))
                _ = tp_easy_setopt_ptr(easy, CURLOPT_POSTFIELDS, copy)
                if method != "POST" { _ = tp_easy_setopt_str(easy, CURLOPT_CUSTOMREQUEST, method) }
            }
        }
    }

    // MARK: driven by curl (through CurlCallbacks.swift) and by the loop

    /// curl wants `fd` watched for `what` (CURL_POLL_*).
    func curlWantsSocket(_ fd: Int32, _ what: Int32) {
        if let old = watchers.removeValue(forKey: fd) {
            old.cancel()
            retiredWatchers.append(old)
        }
        if what == CURL_POLL_REMOVE || closed { return }
        let read = what == CURL_POLL_IN || what == CURL_POLL_INOUT
        let write = what == CURL_POLL_OUT || what == CURL_POLL_INOUT
        watchers[fd] = FDWatcher(loop: loop, fd: fd, read: read, write: write) { [unowned self] r, w in
            var mask: Int32 = 0
            if r { mask |= CURL_CSELECT_IN }
            if w { mask |= CURL_CSELECT_OUT }
            self.drive(fd, mask)
        }
    }

    /// curl wants to be called after `millis` (-1: no timer).
    func curlWantsTimer(_ millis: Int) {
        if millis < 0 { timer?.cancel(); return }
        if let t = timer { t.arm(millis) } else {
            timer = Timer(loop: loop, millis: millis) { [unowned self] in self.drive(-1, 0) }
        }
    }

    private func drive(_ fd: Int32, _ mask: Int32) {
        if closed { return }
        retiredWatchers.removeAll()
        var running: Int32 = 0
        _ = curl_multi_socket_action(multi, fd, mask, &running)
        collectCompletions()
    }

    private func collectCompletions() {
        var left: Int32 = 0
        while !closed, let msg = curl_multi_info_read(multi, &left) {
            guard msg.pointee.msg == CURLMSG_DONE, let easy = msg.pointee.easy_handle else { continue }
            let code = msg.pointee.data.result
            curl_multi_remove_handle(multi, easy)
            guard let t = active.removeValue(forKey: easy) else { continue }
            let result: Result<HTTPResponse, HTTPError>
            if code == CURLE_OK {
                var status = 0
                _ = tp_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
                var version = 0
                _ = tp_easy_getinfo_long(easy, CURLINFO_HTTP_VERSION, &version)
                result = .success(HTTPResponse(status: status, headers: t.headers, body: t.body,
                                               version: version == Int(CURL_HTTP_VERSION_2_0) ? "2" : "1.1"))
            } else {
                transportFailures += 1
                result = .failure(t.error(for: code, easy: easy))
            }
            recycle(easy)
            t.finish(result)
        }
    }

    private func recycle(_ easy: UnsafeMutableRawPointer) {
        if idleEasy.count < 256 {
            curl_easy_reset(easy)
            idleEasy.append(easy)
        } else {
            curl_easy_cleanup(easy)
        }
    }
}

/// One request in flight: its buffers and its completion.
final class CurlTransfer {
    let maxBytes: Int
    private var done: ((Result<HTTPResponse, HTTPError>) -> Void)?
    var headers = [(String, String)]()
    var body = [UInt8]()
    var tooLarge = false
    var headerList: UnsafeMutablePointer<curl_slist>?
    var requestBody: UnsafeMutableRawPointer?
    let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)

    init(easy: UnsafeMutableRawPointer, maxBytes: Int, done: @escaping (Result<HTTPResponse, HTTPError>) -> Void) {
        self.maxBytes = maxBytes
        self.done = done
        errorBuffer[0] = 0
    }

    deinit {
        if let l = headerList { curl_slist_free_all(l) }
        requestBody?.deallocate()
        errorBuffer.deallocate()
    }

    func finish(_ result: Result<HTTPResponse, HTTPError>) {
        let d = done
        done = nil
        d?(result)
    }

    func receiveHeaderLine(_ line: UnsafeBufferPointer<UInt8>) {
        var end = line.count
        while end > 0 && (line[end - 1] == 10 || line[end - 1] == 13) { end -= 1 }
        if end == 0 { return }
        // A new status line (after 100 Continue or a 1xx) starts a fresh header set.
        if end >= 5 && line[0] == UInt8(ascii: "H") && line[1] == UInt8(ascii: "T") && line[4] == UInt8(ascii: "/") {
            headers.removeAll(); return
        }
        guard let colon = line[0..<end].firstIndex(of: UInt8(ascii: ":")) else { return }
        let name = String(decoding: line[0..<colon], as: UTF8.self).lowercased()
        var start = colon + 1
        while start < end && (line[start] == 32 || line[start] == 9) { start += 1 }
        headers.append((name, String(decoding: line[start..<end], as: UTF8.self)))
    }

    /// Returns false to make curl abort the transfer.
    func receiveBody(_ chunk: UnsafeBufferPointer<UInt8>) -> Bool {
        if body.count + chunk.count > maxBytes { tooLarge = true; return false }
        body.append(contentsOf: chunk)
        return true
    }

    func error(for code: CURLcode, easy: UnsafeMutableRawPointer) -> HTTPError {
        let detail = errorBuffer[0] != 0 ? String(cString: errorBuffer) : String(cString: curl_easy_strerror(code))
        if tooLarge { return .transport("response larger than \(maxBytes) bytes") }
        switch code {
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_COULDNT_CONNECT,
             CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE:
            return .connect(detail)
        case CURLE_OPERATION_TIMEDOUT:
            var connectTime: curl_off_t = 0
            _ = tp_easy_getinfo_off(easy, CURLINFO_CONNECT_TIME_T, &connectTime)
            return connectTime == 0 ? .connect("connect timed out: \(detail)") : .timeout(detail)
        default:
            return .transport(detail)
        }
    }
}
