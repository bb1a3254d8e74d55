import Glibc

/// RFC 1123 dates ("Thu, 27 Apr 2017 00:51:12 GMT") for `x-ms-date`, and parsing of the same
/// form for `Retry-After`.
enum HTTPDate {
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    static func format(unixSeconds: Int) -> String {
        var t = time_t(unixSeconds)
        var tm = Glibc.tm()
        gmtime_r(&t, &tm)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(days[Int(tm.tm_wday)]), \(two(tm.tm_mday)) \(months[Int(tm.tm_mon)]) \(tm.tm_year + 1900) "
            + "\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec)) GMT"
    }

    static func now() -> String { format(unixSeconds: Int(time(nil))) }

    /// Parses "Thu, 27 Apr 2017 00:51:12 GMT"; nil for anything else.
    static func parse(_ text: String) -> Int? {
        let parts = text.split(separator: " ")
        guard parts.count == 6, parts[5] == "GMT",
              let day = Int(parts[1]), let mon = months.firstIndex(of: String(parts[2])),
              let year = Int(parts[3]) else { return nil }
        let hms = parts[4].split(separator: ":").compactMap { Int($0) }
        guard hms.count == 3 else { return nil }
        var tm = Glibc.tm()
        tm.tm_year = Int32(year - 1900); tm.tm_mon = Int32(mon); tm.tm_mday = Int32(day)
        tm.tm_hour = Int32(hms[0]); tm.tm_min = Int32(hms[1]); tm.tm_sec = Int32(hms[2])
        return Int(timegm(&tm))
    }
}

/// Monotonic milliseconds, for deadlines and latency.
func monotonicMillis() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}
