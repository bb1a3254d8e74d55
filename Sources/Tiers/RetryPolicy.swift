/// When and how long to wait before trying a request again.
public struct RetryPolicy: Sendable {
    /// Attempts in all, the first included.
    public var maxAttempts = 6
    /// Backoff for the first retry; doubled each time, capped at `maxDelayMillis`, jittered.
    public var baseDelayMillis = 50
    public var maxDelayMillis = 4_000
    /// Total time for all attempts and waits; no retry starts that could not finish before it.
    public var deadlineMillis = 20_000
    /// Statuses worth retrying: timeouts, throttling, retry-with and transient server errors.
    public var retryStatuses: Set<Int> = [408, 429, 449, 500, 502, 503, 504]

    public init() {}

    /// A policy that never retries (one attempt).
    public static var none: RetryPolicy { var p = RetryPolicy(); p.maxAttempts = 1; return p }

    /// Wait before retry number `retry` (1-based): the server's hint if it gave one, else
    /// "equal jitter" exponential backoff (half fixed, half random), so waits grow but never vanish.
    func delayMillis(retry: Int, serverHintMillis: Int?) -> Int {
        if let hint = serverHintMillis { return max(0, hint) }
        let exp = min(maxDelayMillis, baseDelayMillis << min(retry - 1, 20))
        let half = max(1, exp / 2)
        return half + Int.random(in: 0...half)
    }

    /// The server's requested delay: `x-ms-retry-after-ms` (milliseconds) or `Retry-After`
    /// (seconds or an HTTP date).
    static func serverHintMillis(_ response: HTTPResponse, nowUnixSeconds: Int) -> Int? {
        if let ms = response.header("x-ms-retry-after-ms"), let v = Double(ms.trimmingSpaces) {
            return Int(v)
        }
        if let ra = response.header("retry-after") {
            if let secs = Int(ra.trimmingSpaces) { return secs * 1000 }
            if let when = HTTPDate.parse(ra.trimmingSpaces) { return max(0, when - nowUnixSeconds) * 1000 }
        }
        return nil
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }
}
