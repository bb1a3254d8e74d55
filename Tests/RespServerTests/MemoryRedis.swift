/// Just enough of Redis, in memory, to answer what `EmbeddedProxy`'s tests send: strings (SET,
/// GET, INCR, DEL), PING, ECHO, SELECT, MULTI/EXEC/DISCARD and QUIT, on one connection's bytes.
/// Requests may arrive split anywhere; only complete ones are answered.
final class MemoryRedis {
    /// The server's data, shared by every connection to it.
    final class Store {
        var strings: [[UInt8]: [UInt8]] = [:]
        /// Every command run, by any connection, in order (names lowercased).
        var log: [String] = []
    }

    private let store: Store
    private var pending: [UInt8] = []
    /// Commands queued since MULTI (nil: no transaction).
    private var queued: [[[UInt8]]]?

    init(_ store: Store) { self.store = store }

    /// Answers every complete request in `bytes` (with what came before); `closes`: QUIT was among them.
    func serve(_ bytes: [UInt8]) -> (replies: [UInt8], closes: Bool) {
        pending += bytes
        var out: [UInt8] = []
        while let (args, length) = MemoryRedis.request(pending) {
            pending.removeFirst(length)
            guard !args.isEmpty else { continue }
            out += handle(args)
            if String(decoding: args[0], as: UTF8.self).lowercased() == "quit" { return (out, true) }
        }
        return (out, false)
    }

    private func handle(_ args: [[UInt8]]) -> [UInt8] {
        let name = String(decoding: args[0], as: UTF8.self).lowercased()
        if var q = queued, !["exec", "discard", "multi"].contains(name) {
            q.append(args)
            queued = q
            return Array("+QUEUED\r\n".utf8)
        }
        switch name {
        case "multi":
            if queued != nil { return Array("-ERR MULTI calls can not be nested\r\n".utf8) }
            queued = []
            return Array("+OK\r\n".utf8)
        case "exec":
            guard let q = queued else { return Array("-ERR EXEC without MULTI\r\n".utf8) }
            queued = nil
            return Array("*\(q.count)\r\n".utf8) + q.flatMap(run)
        case "discard":
            guard queued != nil else { return Array("-ERR DISCARD without MULTI\r\n".utf8) }
            queued = nil
            return Array("+OK\r\n".utf8)
        default:
            return run(args)
        }
    }

    private func run(_ args: [[UInt8]]) -> [UInt8] {
        let name = String(decoding: args[0], as: UTF8.self).lowercased()
        store.log.append(name)
        switch (name, args.count) {
        case ("ping", 1): return Array("+PONG\r\n".utf8)
        case ("echo", 2): return MemoryRedis.bulk(args[1])
        case ("quit", 1), ("select", 2): return Array("+OK\r\n".utf8)
        case ("set", 3):
            store.strings[args[1]] = args[2]
            return Array("+OK\r\n".utf8)
        case ("get", 2): return store.strings[args[1]].map(MemoryRedis.bulk) ?? Array("$-1\r\n".utf8)
        case ("del", 2): return Array(":\(store.strings.removeValue(forKey: args[1]) == nil ? 0 : 1)\r\n".utf8)
        case ("incr", 2):
            guard let n = Int(String(decoding: store.strings[args[1]] ?? Array("0".utf8), as: UTF8.self)) else {
                return Array("-ERR value is not an integer or out of range\r\n".utf8)
            }
            store.strings[args[1]] = Array(String(n + 1).utf8)
            return Array(":\(n + 1)\r\n".utf8)
        default:
            return Array("-ERR unknown command '\(name)'\r\n".utf8)
        }
    }

    static func bulk(_ value: [UInt8]) -> [UInt8] { Array("$\(value.count)\r\n".utf8) + value + Array("\r\n".utf8) }

    /// The first complete request in `bytes` (multibulk, or an inline line split on spaces) and
    /// its length; nil if it is not all there yet.
    static func request(_ bytes: [UInt8]) -> (args: [[UInt8]], length: Int)? {
        guard let first = bytes.first else { return nil }
        guard first == UInt8(ascii: "*") else {
            guard let nl = bytes.firstIndex(of: 0x0A) else { return nil }
            let line = bytes[..<nl].filter { $0 != 0x0D }
            return (line.split(separator: 0x20).map(Array.init), nl + 1)
        }
        var p = 0
        func number() -> Int? {
            guard let cr = bytes[p...].firstIndex(of: 0x0D), cr + 1 < bytes.count else { return nil }
            let n = Int(String(decoding: bytes[(p + 1)..<cr], as: UTF8.self))
            p = cr + 2
            return n
        }
        guard let count = number() else { return nil }
        var args: [[UInt8]] = []
        for _ in 0..<max(count, 0) {
            guard p < bytes.count, let len = number(), p + len + 2 <= bytes.count else { return nil }
            args.append(Array(bytes[p..<(p + len)]))
            p += len + 2
        }
        return (args, p)
    }
}
