import Tiers

/// The proxy's own INFO sections, `# Tiers` and `# Proxy`, appended to Redis's reply when the
/// sections asked for include them, as Redis selects its own: none, `default`, `all` and
/// `everything` include both; `tiers` / `proxy` (any case, among other names) select one.
/// Counters are since the last `TIERS RESETSTAT`.
enum InfoSections {
    static func wanted(_ sections: [String]) -> (tiers: Bool, proxy: Bool) {
        if sections.isEmpty || sections.contains(where: { ["default", "all", "everything"].contains($0) }) {
            return (true, true)
        }
        return (sections.contains("tiers"), sections.contains("proxy"))
    }

    /// INFO's reply (a bulk string, or a RESP3 verbatim string `=N\r\ntxt:…`) with the sections added.
    static func amend(_ reply: [UInt8], sections: [String], worker: Worker) -> [UInt8] {
        let (tiers, proxy) = wanted(sections)
        guard tiers || proxy, let type = reply.first, type == UInt8(ascii: "$") || type == UInt8(ascii: "="),
              let headerEnd = reply.firstIndex(of: UInt8(ascii: "\n")), reply.count >= headerEnd + 3 else { return reply }
        var body = Array(reply[(headerEnd + 1)..<(reply.count - 2)])   // without the trailing CRLF
        let totals = worker.proxyMetrics.sinceReset()
        var added: [String] = []
        if tiers { added.append(render("Tiers", tiersFields(worker, totals))) }
        if proxy { added.append(render("Proxy", proxyFields(worker, totals))) }
        let prefixLength = type == UInt8(ascii: "=") ? 4 : 0                // verbatim: "txt:"
        if body.count > prefixLength { body += Array("\r\n".utf8) }
        body += Array(added.joined(separator: "\r\n").utf8)
        return Array("\(Character(Unicode.Scalar(type)))\(body.count)\r\n".utf8) + body + Array("\r\n".utf8)
    }

    static func render(_ title: String, _ fields: [(String, String)]) -> String {
        "# \(title)\r\n" + fields.map { "\($0.0):\($0.1)\r\n" }.joined()
    }

    /// The cascade's fields, then per configured lower tier: requests by outcome, HTTP retries
    /// and throttling, latency percentiles (µs), in flight, bytes, promotions, probe state.
    static func tiersFields(_ worker: Worker, _ t: Totals) -> [(String, String)] {
        let config = worker.tierSetup.config
        var fields: [(String, String)] = [("warm_tier", "\(config.warm)"), ("cold_tier", "\(config.cold)")]
        // The key id only, never the key.
        fields += worker.tierSetup.cipher?.keys.infoFields ?? [("tier_encryption", "off")]
        fields += worker.tiering.infoLines(t)
        let health = worker.proxyMetrics.health
        for tier in LowerTier.allCases {
            let i = LoopMetrics.tierIndex(tier)
            let n = tier.rawValue
            let latency = t.latency(tier)
            let record = health.record(n)
            fields += [
                ("\(n)_requests", "\(latency.count)"),
                ("\(n)_get_hits", "\(t.requests(tier, .get, .hit))"),
                ("\(n)_get_misses", "\(t.requests(tier, .get, .miss))"),
                ("\(n)_errors", "\(t.requests(tier, outcome: .error))"),
                ("\(n)_timeouts", "\(t.requests(tier, outcome: .timeout))"),
                ("\(n)_retries", "\(t.http[i].retries)"),
                ("\(n)_throttled", "\(t.http[i].throttled)"),
                ("\(n)_unavailable_503", "\(t.http[i].unavailable)"),
                ("\(n)_latency_p50_us", "\(latency.quantile(0.5))"),
                ("\(n)_latency_p95_us", "\(latency.quantile(0.95))"),
                ("\(n)_latency_p99_us", "\(latency.quantile(0.99))"),
                ("\(n)_latency_p999_us", "\(latency.quantile(0.999))"),
                ("\(n)_inflight", "\(t.tierInflight[i])"),
                ("\(n)_bytes_read", "\(t.tierBytes[i * 2])"),
                ("\(n)_bytes_written", "\(t.tierBytes[i * 2 + 1])"),
                ("\(n)_promotions", "\(t.tierPromotions[i])"),
                ("\(n)_state", record.map { $0.state.rawValue } ?? (worker.config.metricsPort > 0 ? "none" : "unknown")),
                ("\(n)_last_error", record?.lastError.map(oneLine) ?? "none"),
            ]
        }
        return fields
    }

    static func proxyFields(_ worker: Worker, _ t: Totals) -> [(String, String)] {
        let m = worker.proxyMetrics
        var fields: [(String, String)] = [
            ("proxy_version", tierproxyVersion),
            ("loops", "\(m.loops.count)"),
            ("connected_clients", "\(m.clientCount.value)"),
            ("pinned_clients", "\(t[.pinnedLinks])"),
            ("maxclients", "\(worker.config.maxclients)"),
            ("rejected_connections", "\(t[.clientsRejected])"),
            ("total_connections_received", "\(t[.clientsAccepted])"),
            ("upstream", "\(worker.config.upstream.host):\(worker.config.upstream.port)"),
            ("upstream_connections_shared", "\(t[.sharedLinks])"),
            ("upstream_connections_pinned", "\(t[.pinnedLinks])"),
            ("upstream_connections_proxy", "\(t[.proxyLinks])"),
            ("upstream_connections_opened", "\(t[.upstreamConnections])"),
            ("upstream_reconnects", "\(t[.upstreamReconnects])"),
            ("upstream_connection_failures", "\(t[.upstreamFailures])"),
            ("buffer_memory_bytes", "\(t[.bufferBytes])"),
            ("hot_state", m.health.record("hot").map { $0.state.rawValue } ?? "unknown"),
            ("metrics_port", "\(worker.config.metricsPort)"),
        ]
        for (i, n) in t.loopRequests.enumerated() { fields.append(("loop\(i)_requests", "\(n)")) }
        return fields
    }

    /// INFO values are one line: CR and LF would split the field.
    static func oneLine(_ s: String) -> String {
        String(s.map { $0 == "\r" || $0 == "\n" ? " " : $0 })
    }
}
