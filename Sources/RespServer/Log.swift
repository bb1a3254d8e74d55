import Glibc
import Synchronization

/// One line per event, Redis-like (`pid:P 25 Nov 2026 02:46:00.123 * message`) or JSON.
/// Each line is written with a single write(2), so lines from several loops never interleave.
enum Log {
    /// `TIERS CONFIG SET loglevel` changes it on one loop while every loop reads it: an atomic.
    private static let levelCell = Atomic<Int>(LogLevel.notice.rawValue)
    static var level: LogLevel {
        get { LogLevel(rawValue: levelCell.load(ordering: .relaxed)) ?? .notice }
        set { levelCell.store(newValue.rawValue, ordering: .relaxed) }
    }
    nonisolated(unsafe) static var format = LogFormat.redis
    nonisolated(unsafe) static var fd: Int32 = 1

    /// Opens `path` for appending (empty = stdout).
    static func configure(level: LogLevel, format: LogFormat, path: String) throws {
        self.level = level
        self.format = format
        if !path.isEmpty {
            let f = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard f >= 0 else { throw ConfigError("cannot open logfile '\(path)': \(String(cString: strerror(errno)))") }
            fd = f
        }
    }

    static func debug(_ message: @autoclosure () -> String) { write(.debug, message) }
    static func verbose(_ message: @autoclosure () -> String) { write(.verbose, message) }
    static func notice(_ message: @autoclosure () -> String) { write(.notice, message) }
    static func warning(_ message: @autoclosure () -> String) { write(.warning, message) }

    /// An event with fields: Redis format appends them as `key=value` after the message; JSON
    /// carries each as a key of the line's object (numbers as numbers).
    static func event(_ lvl: LogLevel, _ message: String, _ fields: [(String, LogValue)]) {
        guard lvl >= level else { return }
        write(lvl, { message }, fields: fields)
    }

    private static func write(_ lvl: LogLevel, _ message: () -> String, fields: [(String, LogValue)] = []) {
        guard lvl >= level else { return }
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var line: String
        switch format {
        case .redis:
            let mark: String = ["." , "-", "*", "#"][lvl.rawValue]
            let extra = fields.map { " \($0.0)=\($0.1.plain)" }.joined()
            line = "\(getpid()):P \(timestamp(ts, iso: false)) \(mark) \(message())\(extra)\n"
        case .json:
            let name = ["debug", "verbose", "notice", "warning"][lvl.rawValue]
            line = "{\"ts\":\"\(timestamp(ts, iso: true))\",\"level\":\"\(name)\",\"pid\":\(getpid()),\"msg\":\(jsonQuoted(message()))\(fields.map { ",\(jsonQuoted($0.0)):\($0.1.json)" }.joined())}\n"
        }
        line.withUTF8 { u in _ = Glibc.write(fd, u.baseAddress, u.count) }
    }

    /// "25 Nov 2026 02:46:00.123" (local time, as Redis) or ISO 8601 UTC for JSON.
    private static func timestamp(_ ts: timespec, iso: Bool) -> String {
        var t = ts.tv_sec
        var parts = tm()
        if iso { gmtime_r(&t, &parts) } else { localtime_r(&t, &parts) }
        var buf = [CChar](repeating: 0, count: 64)
        strftime(&buf, buf.count, iso ? "%Y-%m-%dT%H:%M:%S" : "%d %b %Y %H:%M:%S", &parts)
        let millis = Int(ts.tv_nsec / 1_000_000)
        let ms = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return String(cString: buf) + "." + ms + (iso ? "Z" : "")
    }
}

/// A field of a log event.
enum LogValue {
    case text(String)
    case number(Double)

    /// As the value of `key=value` in a Redis-format line.
    var plain: String {
        switch self {
        case .number(let n): return LogValue.format(n)
        case .text(let t):
            // Quoted (JSON-escaped) when it holds a space, a quote, `=` or a control character: a
            // key printed by `log-keys yes` must not split the line or forge a field.
            let quote = t.isEmpty || t.unicodeScalars.contains { $0 == " " || $0 == "\"" || $0 == "=" || $0.value < 0x20 || $0.value == 0x7f }
            return quote ? jsonQuoted(t) : t
        }
    }
    var json: String {
        switch self {
        case .number(let n): return LogValue.format(n)
        case .text(let t): return jsonQuoted(t)
        }
    }
    static func format(_ n: Double) -> String {
        n == n.rounded() && abs(n) < 1e15 ? "\(Int64(n))" : "\(n)"
    }
}

/// A JSON string literal for `s`.
func jsonQuoted(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 {
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out + "\""
}
