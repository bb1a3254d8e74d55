import CHiredis

/// Commands the proxy itself sends upstream, formatted by hiredis.
enum UpstreamCommands {
    /// RESP bytes for one command.
    static func format(_ args: [String]) -> [UInt8] {
        var cstrings = args.map { strdup($0) }
        defer { cstrings.forEach { free($0) } }
        var lengths = args.map { $0.utf8.count }
        var target: UnsafeMutablePointer<CChar>?
        let n = cstrings.withUnsafeMutableBufferPointer { argv in
            argv.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: args.count) { p in
                redisFormatCommandArgv(&target, Int32(args.count), p, &lengths)
            }
        }
        guard n > 0, let t = target else { return [] }
        defer { redisFreeCommand(t) }
        return Array(UnsafeRawBufferPointer(start: t, count: Int(n)))
    }
}
#if canImport(Glibc)
import Glibc
#endif
