import COpenSSL
import Synchronization

/// What the proxy knows of scripts' intent, shared by every loop: a script whose body declares
/// `#!lua flags=no-writes` (Redis 7's own flag), and the `_RO` commands, cannot write, so their
/// keys are only brought up; every other script may write, and the keys it declares are captured
/// and copied below. Bodies seen in `EVAL` and `SCRIPT LOAD` are remembered by SHA-1, so an
/// `EVALSHA` of one is judged the same way; an unknown SHA may write. Functions are judged by
/// the flags hot reports for them (`FunctionFlags`).
final class ScriptFlags: @unchecked Sendable {
    private let readOnly = Mutex<Set<String>>([])
    /// Functions registered with `flags={'no-writes'}` (see `FunctionFlags`).
    private let readOnlyFunctions = Mutex<Set<String>>([])
    /// SHA-1s (or function names) already logged for writing keys they did not declare.
    private let warned = Mutex<Set<String>>([])

    func mayWrite(_ name: String, _ args: [[UInt8]]) -> Bool {
        switch name {
        case "eval_ro", "evalsha_ro", "fcall_ro":
            return false
        case "eval":
            guard args.count > 1 else { return true }
            let noWrites = ScriptFlags.declaresNoWrites(args[1])
            if noWrites { readOnly.withLock { _ = $0.insert(ScriptFlags.sha1Hex(args[1])) } }
            return !noWrites
        case "evalsha":
            guard args.count > 1 else { return true }
            let sha = String(decoding: args[1], as: UTF8.self).lowercased()
            return !readOnly.withLock { $0.contains(sha) }
        case "fcall":
            guard args.count > 1 else { return true }
            let function = String(decoding: args[1], as: UTF8.self)
            return !readOnlyFunctions.withLock { $0.contains(function) }
        default:
            return true
        }
    }

    /// `SCRIPT LOAD body`: remembered, so that a later EVALSHA is judged by its body.
    func loaded(_ body: [UInt8]) {
        if ScriptFlags.declaresNoWrites(body) { readOnly.withLock { _ = $0.insert(ScriptFlags.sha1Hex(body)) } }
    }

    func setReadOnlyFunctions(_ names: Set<String>) { readOnlyFunctions.withLock { $0 = names } }

    /// True the first time `id` is seen: logs about one script are written once.
    func firstWarning(_ id: String) -> Bool { warned.withLock { $0.insert(id).inserted } }

    /// The script's identity in logs: its SHA-1 (EVALSHA's argument, or EVAL's body hashed), or
    /// the function's name.
    static func identity(_ name: String, _ args: [[UInt8]]) -> String {
        guard args.count > 1 else { return name }
        if name.hasPrefix("evalsha") || name.hasPrefix("fcall") { return String(decoding: args[1], as: UTF8.self) }
        return sha1Hex(args[1])
    }

    /// A shebang line `#!lua … flags=…no-writes…` (Redis 7 script flags).
    static func declaresNoWrites(_ body: [UInt8]) -> Bool {
        guard body.starts(with: Array("#!".utf8)) else { return false }
        let line = body.prefix { $0 != UInt8(ascii: "\n") }
        let words = String(decoding: line, as: UTF8.self).split(separator: " ")
        guard let flags = words.first(where: { $0.hasPrefix("flags=") }) else { return false }
        return flags.dropFirst("flags=".count).split(separator: ",").contains("no-writes")
    }

    static func sha1Hex(_ body: [UInt8]) -> String {
        var digest = [UInt8](repeating: 0, count: 20)
        body.withUnsafeBufferPointer { b in _ = SHA1(b.baseAddress, b.count, &digest) }
        let hex = Array("0123456789abcdef".utf8)
        return String(decoding: digest.flatMap { [hex[Int($0 >> 4)], hex[Int($0 & 15)]] }, as: UTF8.self)
    }
}
