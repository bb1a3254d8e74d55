import CHiredis
import Foundation
@testable import RESP

// MARK: - Seeded randomness (tests must be reproducible)

/// SplitMix64: small, fast and seedable, so a failure names the seed that reproduces it.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255, using: &self) } }
}

extension Array where Element == UInt8 {
    init(_ s: String) { self = Array(s.utf8) }
}

// MARK: - Feeding the parser the way the proxy does

/// A request as the caller sees it after resolving spans against the stream.
struct ParsedRequest: Equatable, CustomStringConvertible {
    var length: Int
    var name: CommandName
    var args: [[UInt8]]
    var isEmpty: Bool
    var isInline: Bool

    var description: String {
        let shown = args.map { String(decoding: $0.prefix(40), as: UTF8.self).debugDescription }
        return "\(isInline ? "inline" : "mbulk")(len \(length)\(isEmpty ? ", empty" : "") \(name) \(shown))"
    }
}

struct ParseOutcome: Equatable {
    var requests: [ParsedRequest] = []
    var status: ParseStatus = .ok
    var partialBytes = 0
}

/// Feeds `stream` cut at `cuts` (ascending offsets). With `clearBetweenFeeds` the caller
/// processes and clears its arrays after every segment (the parser must keep a partial
/// request's spans itself); otherwise it keeps appending for the whole stream.
func parse(_ stream: [UInt8], cuts: [Int] = [], clearBetweenFeeds: Bool = false,
           parser initial: RequestParser = RequestParser()) -> ParseOutcome {
    var parser = initial
    var out = ParseOutcome()
    var frames: [RequestFrame] = []
    var spans: [ArgSpan] = []
    var frameStart = 0          // stream offset of the next frame not yet resolved
    var resolved = 0            // frames already resolved

    func resolve() {
        while resolved < frames.count {
            let f = frames[resolved]
            var args: [[UInt8]]
            if let inline = f.inlineArgs {
                args = inline
            } else {
                args = (0..<f.argc).map { i in
                    let s = spans[f.spanStart + i]
                    return Array(stream[(frameStart + s.offset)..<(frameStart + s.offset + s.count)])
                }
            }
            if f.isEmpty { args = [] }
            out.requests.append(ParsedRequest(length: f.length, name: f.name, args: args,
                                              isEmpty: f.isEmpty, isInline: f.inlineArgs != nil))
            frameStart += f.length
            resolved += 1
        }
    }

    let bounds = [0] + cuts + [stream.count]
    stream.withUnsafeBytes { all in
        for i in 0..<(bounds.count - 1) where bounds[i] < bounds[i + 1] || bounds.count == 2 {
            let segment = UnsafeRawBufferPointer(rebasing: all[bounds[i]..<bounds[i + 1]])
            let status = parser.feed(segment, frames: &frames, spans: &spans)
            resolve()
            if clearBetweenFeeds { frames.removeAll(); spans.removeAll(); resolved = 0 }
            if status != .ok { out.status = status; break }
        }
    }
    out.partialBytes = out.status == .ok ? parser.partialBytes : 0
    return out
}

func oneByteCuts(_ count: Int) -> [Int] { count > 1 ? Array(1..<count) : [] }

// MARK: - Scanning replies the same way

struct ScannedReply: Equatable {
    var end: Int            // offset in the whole stream
    var type: UInt8
    var isNull: Bool
    var isPush: Bool
    var isError: Bool
}

func scan(_ stream: [UInt8], cuts: [Int] = []) -> (replies: [ScannedReply], status: ParseStatus, partial: Int) {
    var scanner = ReplyScanner()
    var replies: [ScannedReply] = []
    var infos: [ReplyInfo] = []
    var status = ParseStatus.ok
    let bounds = [0] + cuts + [stream.count]
    stream.withUnsafeBytes { all in
        for i in 0..<(bounds.count - 1) where bounds[i] < bounds[i + 1] {
            infos.removeAll(keepingCapacity: true)
            status = scanner.feed(UnsafeRawBufferPointer(rebasing: all[bounds[i]..<bounds[i + 1]]), replies: &infos)
            for r in infos {
                replies.append(ScannedReply(end: bounds[i] + r.end, type: r.type, isNull: r.isNull,
                                            isPush: r.isPush, isError: r.isError))
            }
            if status != .ok { break }
        }
    }
    return (replies, status, scanner.partialBytes)
}

// MARK: - hiredis's reader, the reference for RESP2 reply boundaries

/// Ends of the replies hiredis 0.14.1 finds in `stream`, found by feeding it one byte at a
/// time and asking for a reply after each byte; nil if hiredis reports a protocol error.
func hiredisReplyEnds(_ stream: [UInt8]) -> [Int]? {
    guard let reader = redisReaderCreate() else { return nil }
    defer { redisReaderFree(reader) }
    var ends: [Int] = []
    for (i, byte) in stream.enumerated() {
        var b = CChar(bitPattern: byte)
        guard redisReaderFeed(reader, &b, 1) == REDIS_OK else { return nil }
        while true {
            var reply: UnsafeMutableRawPointer? = nil
            guard redisReaderGetReply(reader, &reply) == REDIS_OK else { return nil }
            guard let r = reply else { break }
            freeReplyObject(r)
            ends.append(i + 1)
        }
    }
    return ends
}

// MARK: - A real redis-server to check Redis's own verdicts

/// A redis-server on a free loopback port, for as long as `body` runs.
func withRedisServer<T>(_ body: (RedisConnectionFactory) throws -> T) throws -> T {
    signal(SIGPIPE, SIG_IGN)
    let port = try freeLoopbackPort()
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["redis-server", "--port", "\(port)", "--bind", "127.0.0.1", "--save", "",
                         "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
                         "--logfile", ""]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    let factory = RedisConnectionFactory(port: port)
    defer {
        // SIGTERM would wait forever: the child inherits the test runner's blocked signal mask.
        if let c = try? factory.connect() { c.send(Array("SHUTDOWN NOSAVE\r\n")) }
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
    // Ready when it answers PING; give up after a deadline rather than sleeping and hoping.
    let deadline = Date().addingTimeInterval(10)
    while true {
        if let c = try? factory.connect(), let r = try? c.exchange(Array("PING\r\n"), replies: 1),
           r.first == .status("PONG") { break }
        guard process.isRunning, Date() < deadline else { throw TestFailure("redis-server did not start on port \(port)") }
        usleep(20_000)
    }
    return try body(factory)
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

func freeLoopbackPort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket failed") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
        }
    }
    guard ok else { throw TestFailure("bind failed") }
    return UInt16(bigEndian: addr.sin_port)
}

struct RedisConnectionFactory {
    var port: UInt16
    func connect() throws -> RedisConnection { try RedisConnection(port: port) }
}

/// What Redis answered, decoded by hiredis's reader.
enum RedisReply: Equatable {
    case status(String)
    case error([UInt8])
    case bulk([UInt8]?)
    case integer(Int)
    case array([RedisReply]?)

    init(_ raw: UnsafeMutableRawPointer) {
        let r = raw.assumingMemoryBound(to: redisReply.self).pointee
        func bytes() -> [UInt8] { Array(UnsafeRawBufferPointer(start: r.str, count: r.len)) }
        switch r.type {
        case REDIS_REPLY_STATUS: self = .status(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_ERROR: self = .error(bytes())
        case REDIS_REPLY_STRING: self = .bulk(bytes())
        case REDIS_REPLY_NIL: self = .bulk(nil)
        case REDIS_REPLY_INTEGER: self = .integer(Int(r.integer))
        default:
            self = .array((0..<r.elements).map { RedisReply(UnsafeMutableRawPointer(r.element[$0]!)) })
        }
    }
}

/// A plain blocking socket: raw bytes out, replies in, with a deadline on every read.
final class RedisConnection {
    let fd: Int32
    let reader: UnsafeMutablePointer<redisReader>
    private(set) var closedByServer = false

    init(port: UInt16) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = port.bigEndian
        let rc = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else { close(fd); throw TestFailure("connect failed") }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        reader = redisReaderCreate()
    }

    deinit {
        redisReaderFree(reader)
        close(fd)
    }

    func send(_ bytes: [UInt8]) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return }
            sent += n
        }
    }

    /// Reads until `replies` replies arrived or the server closed the connection.
    func receive(replies count: Int) throws -> [RedisReply] {
        var out: [RedisReply] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while out.count < count {
            var reply: UnsafeMutableRawPointer? = nil
            guard redisReaderGetReply(reader, &reply) == REDIS_OK else { throw TestFailure("hiredis protocol error") }
            if let r = reply {
                out.append(RedisReply(r))
                freeReplyObject(r)
                continue
            }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { closedByServer = true; break }
            if n < 0 { throw TestFailure("recv failed: errno \(errno)") }
            _ = buf.withUnsafeBytes { redisReaderFeed(reader, $0.baseAddress!.assumingMemoryBound(to: CChar.self), n) }
        }
        return out
    }

    /// After the replies: true when the server closed the connection (as after a protocol error).
    func serverCloses() -> Bool {
        if closedByServer { return true }
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, 0) == 0
    }

    func exchange(_ bytes: [UInt8], replies: Int) throws -> [RedisReply] {
        send(bytes)
        return try receive(replies: replies)
    }
}
