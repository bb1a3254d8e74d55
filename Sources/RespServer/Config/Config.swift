import Reactor
import Tiers

/// Output-buffer limits for one client class, as in redis.conf's `client-output-buffer-limit`.
struct OutputLimit: Equatable {
    var hard = 0          // bytes; 0 = no limit
    var soft = 0          // bytes; 0 = no limit
    var softSeconds = 0   // how long over `soft` before closing
}

enum LogFormat: String { case redis, json }
enum LogLevel: Int, Comparable {
    case debug = 0, verbose, notice, warning
    static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}

/// Every setting tierproxy runs with. `Config()` holds the defaults of `configTable`, their one
/// source; the values written below are only blanks the table's defaults replace (`init`). The
/// loader then applies the file, env and flags.
struct Config {
    var bind: [String] = []
    var port = 0
    var tcpBacklog = 0
    var threads = 0
    var upstream = UpstreamURL()
    var upstreamConnectTimeoutMillis = 0
    /// `upstream-auth entra`: Entra ID tokens instead of the URL's password; `upstream-user`.
    var upstreamEntra = false
    var upstreamUser = ""
    /// TLS to the upstream (`rediss://`): trusted CAs (empty: the system store), a client
    /// certificate for mTLS, the name to verify (empty: the upstream's host), no verification.
    var upstreamTLSCaCertFile = ""
    var upstreamTLSCaCertDir = ""
    var upstreamTLSCertFile = ""
    var upstreamTLSKeyFile = ""
    var upstreamTLSServerName = ""
    var upstreamTLSInsecure = false
    /// Built once at start from the settings above when the upstream is `rediss://`
    /// (`UpstreamTLS.prepare`); every upstream connection of every loop uses it.
    var upstreamTLS: TLSClient?
    var maxclients = 0
    var timeoutSeconds = 0
    var clientQueryBufferLimit = 0
    var protoMaxBulkLen = 0
    var outputLimitNormal = OutputLimit()
    var outputLimitPubsub = OutputLimit()
    var proxyBufferHighWater = 0
    var shutdownTimeoutSeconds = 0
    var loglevel = LogLevel.notice
    var logfile = ""
    var logFormat = LogFormat.redis
    var pidfile = ""
    var dataDir = ""
    /// Lower tiers as URL-like strings; empty = from env (COSMOS_*, BLOB_*), else the embedded defaults.
    var warm = ""
    var cold = ""
    var compressThreshold = 0
    var collectionCaptureLimit = 0
    /// `tier-encryption-key` (base64 or keyvault://; empty: lower tiers in clear) and the keys
    /// of earlier rotations, read-only. Never printed.
    var tierEncryptionKey = ""
    var tierEncryptionOldKeys: [String] = []
    /// CA bundle for HTTPS to the lower tiers, Entra ID and Key Vault (empty: the system store).
    var tierTLSCaCertFile = ""
    /// TLS for clients (Redis's `tls-*`): where, and what the context is built from.
    var tlsPort = 0
    var tlsSettings = TLSServer.Settings()
    /// Built at start from `tlsSettings` when `tlsPort` is set (`ClientTLS.prepare`); SIGHUP
    /// builds a new one from the same files.
    var clientTLS: TLSServer?
    /// Placement rules, in order (first match wins).
    var rules: [PlacementRule] = []
    var tierTimeoutMillis = 0
    var tiersAllowFlush = false
    var tiersScriptsStrict = false
    /// SCAN, KEYS, DBSIZE, RANDOMKEY see the lower tiers (`tiers-keyspace`).
    var tiersKeyspace = true
    var keyLogSync = KeyLog.Sync.everysec
    /// `write-behind-delay`: ms a write-behind key stays pending before it is flushed.
    var writeBehindDelayMillis = 1000
    var negativeCacheMillis = 0
    /// Metrics and health HTTP endpoint (0 = off) and the address it listens on.
    var metricsPort = 0
    var metricsBind = ""
    /// How often /readyz's probes of hot and each lower tier run.
    var healthProbeIntervalMillis = 0
    /// Tier operations slower than this are logged (-1 = never).
    var tierSlowlogThresholdMillis = 0
    /// Create missing Cosmos database/container and Blob container at start.
    var tiersCreate = false
    /// Print keys in tier log lines (default: a hash of the key).
    var logKeys = false
    /// `auth-mode`, `requirepass`, `user` lines as written, and the users they define (built
    /// once every source is read: a `user default` line wins over requirepass, as in Redis).
    var acl = ACLConfig()
    var aclUsers: [String: ACLUser] = [:]

    /// The table's defaults (`ConfigTests` loads each of them, so none can fail here).
    init() {
        for d in configTable {
            for line in d.defaultArgs.split(separator: "\n") {
                try! d.apply(&self, ConfigLoader.split(String(line)))
            }
        }
    }

    /// Number of event loops: `threads`, or one per core when 0.
    var effectiveThreads: Int {
        if threads > 0 { return threads }
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }
}

#if canImport(Glibc)
import Glibc
#endif
