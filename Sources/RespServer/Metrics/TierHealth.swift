import Synchronization

/// A tier's state as the health probes last saw it.
enum TierState: String {
    /// Not probed yet.
    case unknown
    case up
    /// The probe answered, but requests since the previous probe failed, timed out or were throttled.
    case degraded
    case down
}

/// The last probe of each tier (hot, warm, cold): state, last error, probe latency. Written by the
/// prober on the metrics thread, read by /readyz, /healthz/memory and INFO (never on the request
/// path, so a lock is fine). A state change is logged once, with the tier, both states and why.
final class TierHealth: @unchecked Sendable {
    struct Record {
        var state = TierState.unknown
        var lastError: String?
        var latencyMillis: Double?
        var probes = 0
        var describe = ""
    }

    static let names = ["hot", "warm", "cold"]
    private let records = Mutex<[String: Record]>([:])

    /// Tiers that are configured; the others are reported as "none".
    func configure(_ name: String, describe: String) {
        records.withLock { $0[name] = Record(describe: describe) }
    }

    func record(_ name: String) -> Record? { records.withLock { $0[name] } }

    /// Stores a probe's outcome; logs when the state changed.
    func update(_ name: String, state: TierState, error: String?, latencyMillis: Double?) {
        let before: TierState = records.withLock { all in
            var r = all[name] ?? Record()
            let old = r.state
            r.state = state
            r.latencyMillis = latencyMillis
            if let error { r.lastError = error }
            r.probes += 1
            all[name] = r
            return old
        }
        guard before != state else { return }
        var fields: [(String, LogValue)] = [("event", .text("tier_state")), ("tier", .text(name)),
                                            ("from", .text(before.rawValue)), ("to", .text(state.rawValue))]
        if let error { fields.append(("error", .text(error))) }
        Log.event(state == .up ? .notice : .warning,
                  "Tier \(name) state \(before.rawValue) -> \(state.rawValue)", fields)
    }

    /// Hot answered its last probe and so did every configured lower tier.
    var ready: (Bool, String) {
        records.withLock { all in
            if all.isEmpty { return (false, "no probe yet") }
            for name in TierHealth.names {
                guard let r = all[name] else { continue }
                if r.probes == 0 { return (false, "\(name): not probed yet") }
                if r.state == .down { return (false, "\(name): down: \(r.lastError ?? "")") }
            }
            return (true, "ready")
        }
    }

    /// `{"hot": {...}, "warm": {...}, "cold": {...}}`: each tier's state, last error and latency.
    func json() -> String {
        let all = records.withLock { $0 }
        let parts = TierHealth.names.map { name -> String in
            guard let r = all[name] else { return "\"\(name)\":{\"state\":\"none\"}" }
            // Always with a decimal point ("3.0", not "3"): a JSON reader sees one type, a float.
            let latency = r.latencyMillis.map { "\(($0 * 1000).rounded() / 1000)" } ?? "null"
            return "\"\(name)\":{\"state\":\"\(r.state.rawValue)\",\"backend\":\(jsonQuoted(r.describe)),"
                + "\"last_error\":\(r.lastError.map(jsonQuoted) ?? "null"),\"latency_ms\":\(latency)}"
        }
        return "{" + parts.joined(separator: ",") + "}"
    }
}
