import Reactor
import Tiers

/// `/metrics` in the Prometheus text format (version 0.0.4), named in redis_exporter's style
/// (`tierproxy_` for `redis_`, `_total` counters, base units). Built on the metrics thread from
/// summed loop cells: the request path is not involved.
struct PrometheusText {
    /// Each family's HELP/TYPE and samples, in the order families were first declared: the format
    /// wants every line of one family in one group, and the render loops below go tier by tier.
    private var families: [String] = []
    private var lines: [String: String] = [:]
    var out: String { families.map { lines[$0]! }.joined() }

    /// Prometheus buckets: every power of two from 64 µs to 32 s (bucket edges of `LatencyHistogram`).
    static let bucketMicros = (6...25).map { 1 << $0 }

    static func render(_ m: ProxyMetrics, keyLog: KeyLog?, flusher: Flusher?, uptimeSeconds: Int) -> String {
        var p = PrometheusText()
        let t = m.totals()
        p.proxy(m, t, uptimeSeconds: uptimeSeconds)
        p.tierOperations(t)
        p.tierHealth(m)
        p.cascade(m, t)
        p.writeBehind(keyLog, flusher)
        return p.out
    }

    /// The process, its clients and its connections to hot.
    private mutating func proxy(_ m: ProxyMetrics, _ t: Totals, uptimeSeconds: Int) {
        gauge("tierproxy_up", "1 while the proxy answers scrapes.", [], 1)
        gauge("tierproxy_build_info", "Version of tierproxy.", [("version", tierproxyVersion)], 1)
        gauge("tierproxy_uptime_in_seconds", "Seconds since the proxy started.", [], uptimeSeconds)
        gauge("tierproxy_loops", "Event loops (threads) serving clients.", [], m.loops.count)
        gauge("tierproxy_connected_clients", "Client connections open.", [], m.clientCount.value)
        gauge("tierproxy_pinned_clients", "Clients on an upstream connection of their own.", [], t[.pinnedLinks])
        counter("tierproxy_connections_received_total", "Client connections accepted.", [], t[.clientsAccepted])
        counter("tierproxy_rejected_connections_total", "Clients refused at maxclients.", [], t[.clientsRejected])
        gauge("tierproxy_upstream_connections", "Open connections to hot, by kind.", [("kind", "shared")], t[.sharedLinks])
        gauge("tierproxy_upstream_connections", "", [("kind", "pinned")], t[.pinnedLinks])
        gauge("tierproxy_upstream_connections", "", [("kind", "proxy")], t[.proxyLinks])
        counter("tierproxy_upstream_connections_opened_total", "Connections to hot opened.", [], t[.upstreamConnections])
        counter("tierproxy_upstream_reconnects_total", "Shared connections to hot opened again after one failed.", [], t[.upstreamReconnects])
        counter("tierproxy_upstream_connection_failures_total", "Connections to hot that failed or were lost.", [], t[.upstreamFailures])
        gauge("tierproxy_buffer_memory_bytes", "Bytes waiting in client connection buffers (sampled each second).", [], t[.bufferBytes])
        for loop in m.loops {
            let l = [("loop", "\(loop.loopIndex)")]
            counter("tierproxy_loop_requests_total", "Requests per event loop, by route to hot.", l + [("route", "shared")], loop.value(.sharedRequests))
            counter("tierproxy_loop_requests_total", "", l + [("route", "pinned")], loop.value(.pinnedRequests))
        }
    }

    /// Each lower tier's operations, latencies, bytes and HTTP attempts.
    private mutating func tierOperations(_ t: Totals) {
        for tier in LowerTier.allCases {
            for op in TierOp.allCases {
                let outcomes: [TierOutcome] = op == .get ? [.hit, .miss, .error, .timeout] : [.ok, .error, .timeout]
                for outcome in outcomes {
                    counter("tierproxy_tier_requests_total", "Lower-tier operations by tier, op and result.",
                              [("tier", tier.rawValue), ("op", op.label), ("result", outcome.label)], t.requests(tier, op, outcome))
                }
            }
        }
        for tier in LowerTier.allCases {
            for op in TierOp.allCases {
                histogram("tierproxy_tier_request_duration_seconds", "Lower-tier operation latency, retries included.",
                            [("tier", tier.rawValue), ("op", op.label)], t.latency(tier, op))
            }
        }
        for tier in LowerTier.allCases {
            let i = LoopMetrics.tierIndex(tier)
            let l = [("tier", tier.rawValue)]
            gauge("tierproxy_tier_inflight", "Lower-tier operations in flight.", l, t.tierInflight[i])
            counter("tierproxy_tier_read_bytes_total", "Value bytes read from the tier.", l, t.tierBytes[i * 2])
            counter("tierproxy_tier_written_bytes_total", "Value bytes written to the tier.", l, t.tierBytes[i * 2 + 1])
            counter("tierproxy_tier_promotions_total", "Values found in the tier and promoted to hot.", l, t.tierPromotions[i])
            let h = t.http[i]
            counter("tierproxy_tier_http_requests_total", "HTTP attempts to Cosmos DB / Blob Storage (retries included).", l, h.requests)
            counter("tierproxy_tier_http_retries_total", "HTTP attempts that were retries.", l, h.retries)
            counter("tierproxy_tier_http_throttled_total", "HTTP responses 429 (throttled) and 503 (unavailable).", l + [("status", "429")], h.throttled)
            counter("tierproxy_tier_http_throttled_total", "", l + [("status", "503")], h.unavailable)
            counter("tierproxy_tier_http_failures_total", "HTTP operations that failed after retries.", l, h.failures)
        }
    }

    /// Each tier's state and latency at its last health probe.
    private mutating func tierHealth(_ m: ProxyMetrics) {
        for name in TierHealth.names {
            let r = m.health.record(name)
            for state in [TierState.up, .degraded, .down, .unknown] {
                gauge("tierproxy_tier_state", "1 for the tier's state at its last health probe.", [("tier", name), ("state", state.rawValue)],
                        r?.state == state ? 1 : 0)
            }
            if let ms = r?.latencyMillis {
                gaugeValue("tierproxy_tier_probe_duration_seconds", "Latency of the tier's last health probe.", [("tier", name)], ms / 1000)
            }
        }
    }

    /// The cascade's lookups, promotions and lower-tier writes, summed over the tiers.
    private mutating func cascade(_ m: ProxyMetrics, _ t: Totals) {
        let cascade: [(String, String, String)] = [
            ("lookups", "tierproxy_lookups_total", "Misses in hot looked up in the lower tiers."),
            ("misses", "tierproxy_lookup_misses_total", "Lookups that found the key in no tier."),
            ("negative_cache_hits", "tierproxy_negative_cache_hits_total", "Lookups answered absent by the negative cache."),
            ("promotions", "tierproxy_promotions_total", "Values found below and promoted to hot."),
            ("lower_writes", "tierproxy_lower_writes_total", "Writes sent to a lower tier."),
            ("lower_deletes", "tierproxy_lower_deletes_total", "Deletes sent to a lower tier."),
            ("lower_write_failures", "tierproxy_lower_write_failures_total", "Lower-tier writes and deletes that failed."),
            ("lower_read_errors", "tierproxy_lower_read_errors_total", "Lookups that failed on a tier error."),
        ]
        for (field, name, help) in cascade { counter(name, help, [], t.tiering(field)) }
        counter("tierproxy_lookup_hits_total", "Lookups found in a lower tier, by tier.", [("tier", "warm")], t.tiering("warm_hits"))
        counter("tierproxy_lookup_hits_total", "", [("tier", "cold")], t.tiering("cold_hits"))
        gauge("tierproxy_keys_locked", "Keys held by a tiered command now.", [], m.tiering.locks.heldCount)
    }

    /// The key log's backlog and the write-behind flusher's counters.
    private mutating func writeBehind(_ keyLog: KeyLog?, _ flusher: Flusher?) {
        if let log = keyLog {
            let b = log.backlog
            gauge("tierproxy_write_behind_backlog", "Write-behind keys not yet flushed below.", [], b.dirty)
            gauge("tierproxy_pending_deletes", "Deletes recorded in the key log, still to land below.", [], b.deletes)
            gaugeValue("tierproxy_write_behind_oldest_age_seconds", "Age of the oldest entry still owed below.", [], Double(b.oldestAgeMillis) / 1000)
            gauge("tierproxy_key_log_failed", "1 if the durable key log could not be written.", [], log.writeFailure == nil ? 0 : 1)
        }
        if let c = flusher?.counters {
            counter("tierproxy_write_behind_flushed_total", "Keys the write-behind flusher wrote below.", [], c.flushed)
            counter("tierproxy_write_behind_retries_total", "Flush attempts retried.", [], c.retries)
            counter("tierproxy_write_behind_failures_total", "Flush attempts that failed.", [], c.failures)
        }
    }

    private mutating func header(_ name: String, _ help: String, _ type: String) {
        guard lines[name] == nil else { return }
        families.append(name)
        lines[name] = "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    private mutating func sample(_ family: String, _ line: String) { lines[family]! += line }

    private static func labels(_ l: [(String, String)]) -> String {
        l.isEmpty ? "" : "{" + l.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
    }

    private static func escape(_ v: String) -> String {
        var s = ""
        for c in v {
            switch c {
            case "\\": s += "\\\\"
            case "\"": s += "\\\""
            case "\n": s += "\\n"
            default: s.append(c)
            }
        }
        return s
    }

    mutating func counter(_ name: String, _ help: String, _ l: [(String, String)], _ v: Int) {
        header(name, help, "counter")
        sample(name, "\(name)\(PrometheusText.labels(l)) \(v)\n")
    }
    mutating func gauge(_ name: String, _ help: String, _ l: [(String, String)], _ v: Int) {
        header(name, help, "gauge")
        sample(name, "\(name)\(PrometheusText.labels(l)) \(v)\n")
    }
    mutating func gaugeValue(_ name: String, _ help: String, _ l: [(String, String)], _ v: Double) {
        header(name, help, "gauge")
        sample(name, "\(name)\(PrometheusText.labels(l)) \(v)\n")
    }
    mutating func histogram(_ name: String, _ help: String, _ l: [(String, String)], _ h: LatencyHistogram.Snapshot) {
        header(name, help, "histogram")
        var text = ""
        for micros in PrometheusText.bucketMicros {
            let le = LogValue.format(Double(micros) / 1_000_000)
            text += "\(name)_bucket\(PrometheusText.labels(l + [("le", le)])) \(h.countBelow(micros))\n"
        }
        text += "\(name)_bucket\(PrometheusText.labels(l + [("le", "+Inf")])) \(h.count)\n"
        text += "\(name)_sum\(PrometheusText.labels(l)) \(Double(h.sumMicros) / 1_000_000)\n"
        text += "\(name)_count\(PrometheusText.labels(l)) \(h.count)\n"
        sample(name, text)
    }
}
