import Tiers

/// One configuration directive: its name, default, documentation, and how it sets `Config`.
/// The conf parser, env vars (`TIERPROXY_<NAME>`), flags (`--name`), `--help` and
/// `conf/tierproxy.conf` all come from this one table.
struct Directive {
    let name: String
    let defaultArgs: String
    let doc: [String]
    let apply: (inout Config, [String]) throws -> Void
}

func one(_ args: [String], _ name: String) throws -> String {
    guard args.count == 1 else { throw ConfigError("'\(name)' takes exactly one argument") }
    return args[0]
}

/// A directive holding one string (a path, a name), empty by default.
func text(_ name: String, _ field: WritableKeyPath<Config, String>, _ doc: [String]) -> Directive {
    Directive(name: name, defaultArgs: "\"\"", doc: doc) { c, a in c[keyPath: field] = try one(a, name) }
}

private func outputLimit(_ c: inout Config, _ args: [String]) throws {
    guard args.count == 4 else {
        throw ConfigError("'client-output-buffer-limit' takes: <class> <hard> <soft> <soft-seconds>")
    }
    let limit = OutputLimit(hard: try Units.memory(args[1]), soft: try Units.memory(args[2]),
                            softSeconds: try Units.int(args[3], 0...Int(Int32.max)))
    switch args[0].lowercased() {
    case "normal": c.outputLimitNormal = limit
    case "pubsub": c.outputLimitPubsub = limit
    case "replica", "slave": break   // Redis's to apply (see the directive's doc); a redis.conf line still loads
    default: throw ConfigError("invalid client class '\(args[0])' (normal, pubsub, replica)")
    }
}

/// A literal encryption key must be 32 bytes of base64 (checked now, so a bad one refuses to
/// start and fails --check-config); keyvault:// references are checked once fetched.
private func encryptionKey(_ value: String, _ what: String) throws -> String {
    guard !value.isEmpty, KeyVaultReference(value) == nil else { return value }
    do { _ = try EncryptionKey(base64: value, what: what) } catch let e as TierError { throw ConfigError("\(e)") }
    return value
}

private let proxyDirectives: [Directive] = [
    Directive(name: "bind", defaultArgs: "127.0.0.1 -::1", doc: [
        "Addresses to listen on, as in redis.conf. A leading '-' means: skip it if the address is unavailable.",
        "Use 'bind 0.0.0.0' (or '* -::*') to accept connections from other hosts, e.g. in docker-compose.",
    ]) { c, a in
        guard !a.isEmpty else { throw ConfigError("'bind' needs at least one address") }
        c.bind = a
    },
    Directive(name: "port", defaultArgs: "6380", doc: ["TCP port clients connect to."]) { c, a in
        c.port = try Units.int(try one(a, "port"), 0...65535)
    },
    Directive(name: "auth-mode", defaultArgs: "passthrough", doc: [
        "Who authenticates clients. passthrough: the client's AUTH and HELLO ... AUTH go to its own",
        "upstream connection and Redis judges every command (requirepass and user below are unused).",
        "proxy: the proxy authenticates clients itself against requirepass and the user lines, checks",
        "every command, key and channel against the user's ACL before it reaches Redis or a lower tier",
        "(a denied key is never looked up below), and answers NOAUTH, WRONGPASS and NOPERM with Redis",
        "7.0's words. The upstream only sees the upstream URL's credentials; a client's AUTH is never",
        "sent on. ACL WHOAMI, USERS and LIST answer from the proxy's users; ACL SETUSER, DELUSER, LOAD,",
        "SAVE, LOG, GETUSER and DRYRUN are refused. TIERS needs a user allowed every command and key.",
    ]) { c, a in
        let v = try one(a, "auth-mode").lowercased()
        guard let mode = ACLConfig.Mode(rawValue: v) else { throw ConfigError("auth-mode must be passthrough or proxy") }
        c.acl.mode = mode
    },
    Directive(name: "requirepass", defaultArgs: "\"\"", doc: [
        "auth-mode proxy: the default user's password, as in redis.conf (empty: the default user needs",
        "none). A 'user default ...' line replaces it.",
    ]) { c, a in c.acl.requirePass = try one(a, "requirepass") },
    Directive(name: "user", defaultArgs: "", doc: [
        "user NAME [rule ...]   auth-mode proxy: one user in Redis's ACL syntax; repeatable, one line",
        "per user. A user starts off, without passwords, keys, channels or commands; the rules apply in",
        "order: on off >password <password #sha256hex !sha256hex nopass resetpass ~pattern %R~pattern",
        "%W~pattern %RW~pattern allkeys resetkeys &pattern allchannels resetchannels +@category",
        "-@category +command -command +command|subcommand -command|subcommand allcommands nocommands",
        "reset. Categories and subcommands come from the upstream's COMMAND reply. Without a 'user",
        "default' line the default user is 'on nopass ~* &* +@all' (with requirepass: that password).",
        "  user app on >app-password ~app:* &app:* +@all -@dangerous",
        "  user reader on #<sha256 of the password> %R~* +@read",
    ]) { c, a in
        let words = a.count == 1 ? try ConfigLoader.split(a[0]) : a
        c.acl.userLines.append(words)
    },
    Directive(name: "tcp-backlog", defaultArgs: "511", doc: ["listen() backlog of each listening socket."]) { c, a in
        c.tcpBacklog = try Units.int(try one(a, "tcp-backlog"), 1...65535)
    },
    Directive(name: "threads", defaultArgs: "0", doc: [
        "Event loops, each on its own thread with its own SO_REUSEPORT socket; 0 = one per core.",
        "A client and everything it causes stay on one loop.",
    ]) { c, a in c.threads = try Units.int(try one(a, "threads"), 0...256) },
    Directive(name: "upstream", defaultArgs: "redis://127.0.0.1:6379", doc: [
        "The hot tier: redis://[user:password@]host:port[/db]. Clients start on one connection per event",
        "loop that they share, pipelined; a client whose request needs connection state of its own",
        "(AUTH, SELECT, MULTI, SUBSCRIBE, a blocking command, CLIENT ..., a deep pipeline) gets its own",
        "connection from then on. Every connection is authenticated with these credentials and",
        "switched to this db first.",
        "rediss:// speaks TLS on every upstream connection (e.g. Azure Cache for Redis on 6380):",
        "the certificate chain and the host name are verified (upstream-tls-* below).",
        "Env: REDIS_URL, or REDIS_HOST / REDIS_PORT / REDIS_PASSWORD / REDIS_SSL (true = rediss).",
    ]) { c, a in c.upstream = try UpstreamURL(parsing: try one(a, "upstream")) },
    text("upstream-tls-ca-cert-file", \.upstreamTLSCaCertFile, [
        "rediss:// only. PEM file of the CA certificates the upstream's certificate must chain to;",
        "empty (and no upstream-tls-ca-cert-dir) = the system's store, which is what Azure needs.",
    ]),
    text("upstream-tls-ca-cert-dir", \.upstreamTLSCaCertDir, [
        "rediss:// only. Directory of trusted CA certificates (c_rehash / openssl rehash layout).",
    ]),
    text("upstream-tls-cert-file", \.upstreamTLSCertFile, [
        "rediss:// only. Client certificate (PEM, chain allowed) for an upstream that requires one",
        "(redis-server tls-auth-clients yes); needs upstream-tls-key-file.",
    ]),
    text("upstream-tls-key-file", \.upstreamTLSKeyFile, [
        "rediss:// only. Private key (PEM, unencrypted) of upstream-tls-cert-file.",
    ]),
    text("upstream-tls-server-name", \.upstreamTLSServerName, [
        "rediss:// only. Name sent as SNI and required in the upstream's certificate; empty = the",
        "upstream's host (an IP address is then matched against the certificate's IP addresses).",
    ]),
    Directive(name: "upstream-tls-insecure", defaultArgs: "no", doc: [
        "rediss:// only. yes: accept any certificate, unverified (development only; logged at start).",
    ]) { c, a in c.upstreamTLSInsecure = try Units.bool(try one(a, "upstream-tls-insecure")) },
    Directive(name: "upstream-auth", defaultArgs: "password", doc: [
        "How the proxy authenticates its upstream connections. password: the upstream URL's user and",
        "password (REDIS_PASSWORD; the password may be keyvault://VAULT/NAME, or come from Key Vault",
        "through KEY_VAULT_URI + REDIS_PASSWORD_SECRET_NAME; fetched at start and again on SIGHUP).",
        "entra: Microsoft Entra ID (Azure Cache for Redis, Azure Managed Redis): a token for",
        "https://redis.azure.com/.default from managed identity, workload identity or a client secret",
        "(AZURE_* env, as for the tiers), sent as AUTH <object-id> <token> on every upstream connection",
        "and again on live connections before it expires. Clients should use auth-mode proxy.",
    ]) { c, a in
        switch try one(a, "upstream-auth").lowercased() {
        case "password": c.upstreamEntra = false
        case "entra": c.upstreamEntra = true
        case let other: throw ConfigError("upstream-auth must be password or entra, not '\(other)'")
        }
    },
    text("upstream-user", \.upstreamUser, [
        "upstream-auth entra only: the user name sent with the token; empty = the token's oid claim",
        "(the object id of the managed identity or service principal, which is what Azure expects).",
    ]),
    Directive(name: "upstream-connect-timeout", defaultArgs: "2000", doc: [
        "Milliseconds to wait for the upstream connection (with rediss://, its TLS handshake too);",
        "a client waiting longer gets an error reply.",
    ]) { c, a in c.upstreamConnectTimeoutMillis = try Units.int(try one(a, "upstream-connect-timeout"), 1...3_600_000) },
    Directive(name: "maxclients", defaultArgs: "10000", doc: [
        "Most client connections at once; one more gets '-ERR max number of clients reached'.",
    ]) { c, a in c.maxclients = try Units.int(try one(a, "maxclients"), 1...1_000_000) },
    Directive(name: "timeout", defaultArgs: "0", doc: [
        "Close a client idle for more than this many seconds (0 = never), checked once a second, as",
        "Redis does: subscribers, MONITOR, replicas and clients waiting for a reply are never closed",
        "for it (a client that has subscribed once stays spared after it unsubscribes).",
    ]) { c, a in
        c.timeoutSeconds = try Units.int(try one(a, "timeout"), 0...Int(Int32.max))
    },
    Directive(name: "client-query-buffer-limit", defaultArgs: "1gb", doc: [
        "A client whose unparsed input grows past this is closed, as Redis does.",
    ]) { c, a in c.clientQueryBufferLimit = try Units.memory(try one(a, "client-query-buffer-limit")) },
    Directive(name: "proto-max-bulk-len", defaultArgs: "512mb", doc: [
        "Largest bulk string a request may carry; longer gets 'Protocol error: invalid bulk length'.",
    ]) { c, a in c.protoMaxBulkLen = try Units.memory(try one(a, "proto-max-bulk-len")) },
    Directive(name: "client-output-buffer-limit", defaultArgs: "normal 0 0 0\npubsub 32mb 8mb 60", doc: [
        "client-output-buffer-limit <class> <hard> <soft> <soft-seconds>, classes normal and pubsub",
        "(MONITOR is normal, as in Redis). Replies waiting for a slow client beyond these limits close",
        "it. The proxy also stops reading from Redis while a client is behind, so Redis applies its own",
        "limits to the upstream side. A replica link (SYNC/PSYNC) is held to proxy-buffer-high-water",
        "and Redis's own 'client-output-buffer-limit replica' cuts it: a 'replica' line is accepted",
        "here, as in redis.conf, and has no effect.",
    ], apply: outputLimit),
    Directive(name: "proxy-buffer-high-water", defaultArgs: "1mb", doc: [
        "Backpressure: stop reading a client (or its upstream) while this much waits to be written",
        "to the other side; resume when it has drained.",
    ]) { c, a in c.proxyBufferHighWater = max(4096, try Units.memory(try one(a, "proxy-buffer-high-water"))) },
    Directive(name: "shutdown-timeout", defaultArgs: "10", doc: [
        "Seconds SIGTERM/SIGINT waits for replies already requested before closing clients and exiting.",
    ]) { c, a in c.shutdownTimeoutSeconds = try Units.int(try one(a, "shutdown-timeout"), 0...3600) },
    Directive(name: "loglevel", defaultArgs: "notice", doc: ["debug, verbose, notice or warning."]) { c, a in
        switch try one(a, "loglevel").lowercased() {
        case "debug": c.loglevel = .debug
        case "verbose": c.loglevel = .verbose
        case "notice": c.loglevel = .notice
        case "warning": c.loglevel = .warning
        default: throw ConfigError("loglevel must be debug, verbose, notice or warning")
        }
    },
    Directive(name: "logfile", defaultArgs: "\"\"", doc: ["Log file path; empty = standard output."]) { c, a in
        c.logfile = try one(a, "logfile")
    },
    Directive(name: "log-format", defaultArgs: "redis", doc: ["redis (Redis-like lines) or json (one object per line)."]) { c, a in
        guard let f = LogFormat(rawValue: try one(a, "log-format").lowercased()) else {
            throw ConfigError("log-format must be redis or json")
        }
        c.logFormat = f
    },
    Directive(name: "pidfile", defaultArgs: "\"\"", doc: ["Write the process id here at start (empty = don't)."]) { c, a in
        c.pidfile = try one(a, "pidfile")
    },
    Directive(name: "dir", defaultArgs: "./data", doc: [
        "Data directory for the embedded tiers (warm SQLite, cold directory) when no cloud tier is set.",
    ]) { c, a in c.dataDir = try one(a, "dir") },
    Directive(name: "warm", defaultArgs: "\"\"", doc: [
        "The warm tier: cosmos://ACCOUNT-ENDPOINT/DB/CONTAINER, sqlite:PATH, or none.",
        "Empty: COSMOS_ACCOUNT_URI (or COSMOS_ENDPOINT) with COSMOS_KEY, COSMOS_DATABASE (memory),",
        "COSMOS_CONTAINER (state) if set, else sqlite:<dir>/warm.db. Secrets may be keyvault://VAULT/SECRET.",
    ]) { c, a in c.warm = try one(a, "warm") },
    Directive(name: "cold", defaultArgs: "\"\"", doc: [
        "The cold tier: blob://ACCOUNT-URL/CONTAINER, dir:PATH, or none.",
        "Empty: AZURE_STORAGE_CONNECTION_STRING or BLOB_ACCOUNT_URL with BLOB_CONTAINER (memory) if set,",
        "else dir:<dir>/cold.",
    ]) { c, a in c.cold = try one(a, "cold") },
    Directive(name: "compress-threshold", defaultArgs: "1mb", doc: [
        "Values at least this large are stored gzip-compressed in the cold tier (read back either way).",
    ]) { c, a in c.compressThreshold = try Units.memory(try one(a, "compress-threshold")) },
    Directive(name: "collection-capture-limit", defaultArgs: "64kb", doc: [
        "A hash, list, set, sorted set or stream whose serialised form (DUMP) was at least this large",
        "is not read back after each write: the write only checks that the key still exists and records",
        "it, and the write-behind flusher reads it once per flush, so many writes cost one serialisation.",
        "Such a write is written behind even under a write-through rule (INFO tiers",
        "collection_writes_deferred). 0: read back after every write.",
    ]) { c, a in c.collectionCaptureLimit = try Units.memory(try one(a, "collection-capture-limit")) },
    Directive(name: "tier-encryption-key", defaultArgs: "\"\"", doc: [
        "Encrypts every warm and cold entry (SQLite, directory, Cosmos DB, Blob) with AES-256-GCM:",
        "32 random bytes in base64 (openssl rand -base64 32), or keyvault://VAULT/SECRET (fetched at",
        "start and on SIGHUP). Type and value are sealed, bound to their key and db; key names, db and",
        "expiry stay in clear. Empty = off. Entries written before it was set stay readable; an entry",
        "that fails authentication is an error reply, never a miss. Never logged. docs/encryption.md.",
    ]) { c, a in c.tierEncryptionKey = try encryptionKey(try one(a, "tier-encryption-key"), "tier-encryption-key") },
    Directive(name: "tier-encryption-old-keys", defaultArgs: "\"\"", doc: [
        "Earlier tier-encryption-key values (base64 or keyvault://, space-separated), used only to read",
        "entries sealed with them. Rotation: move the current key here, set a new tier-encryption-key,",
        "restart; new writes use the new key, old entries stay readable without re-encryption.",
    ]) { c, a in
        c.tierEncryptionOldKeys = try a.filter { !$0.isEmpty }.enumerated().map { i, k in
            try encryptionKey(k, "tier-encryption-old-keys entry \(i + 1)")
        }
    },
    Directive(name: "rule", defaultArgs: "", doc: [
        "rule PATTERN policy write-through|write-behind|hot-only [ttl SECONDS] [tier warm|cold]",
        "How writes of keys matching PATTERN (Redis glob, as KEYS) reach the lower tiers; repeatable,",
        "first match wins; keys no rule matches are write-through to warm. write-through replies after",
        "the lower tier acknowledged; write-behind replies once the key is recorded durably (in <dir>)",
        "and flushes in batches; hot-only never writes below and never looks below on a miss.",
        "ttl: the expiry a write gets when the command sets none. tier: where values go first",
        "(values over the warm tier's 2 MB item limit go to cold). The seed library's presets:",
        "  rule session:* policy hot-only ttl 300",
        "  rule profile:* policy write-through tier warm",
        "  rule catalog:* policy write-through tier cold",
    ]) { c, a in
        let words = a.count == 1 ? try ConfigLoader.split(a[0]) : a
        do { c.rules.append(try PlacementRule(arguments: words)) } catch let e as RuleError {
            throw ConfigError(e.message)
        }
    },
    Directive(name: "tier-timeout", defaultArgs: "5000", doc: [
        "Milliseconds a request waits for a lower tier (retries included) before the client gets an",
        "error reply; a miss that needs an unavailable tier is answered with an error, never a nil.",
    ]) { c, a in c.tierTimeoutMillis = try Units.int(try one(a, "tier-timeout"), 1...3_600_000) },
    Directive(name: "tiers-allow-flush", defaultArgs: "no", doc: [
        "FLUSHDB/FLUSHALL through the proxy: refused (no), or applied to hot and the lower tiers (yes).",
    ]) { c, a in c.tiersAllowFlush = try Units.bool(try one(a, "tiers-allow-flush")) },
    Directive(name: "tiers-keyspace", defaultArgs: "yes", doc: [
        "SCAN, KEYS, DBSIZE and RANDOMKEY see the lower tiers too (yes): SCAN walks hot, then warm,",
        "then cold with one cursor; KEYS and DBSIZE count each key once; RANDOMKEY answers a key from",
        "below when hot has none. Each lists the lower tiers' keys (Cosmos/Blob: requests and RU per",
        "page; see the README). no: they answer what hot holds, as plain Redis. Only with a lower",
        "tier; TIERS CONFIG SET tiers-keyspace changes it at runtime.",
    ]) { c, a in c.tiersKeyspace = try Units.bool(try one(a, "tiers-keyspace")) },
    Directive(name: "tiers-scripts", defaultArgs: "lenient", doc: [
        "Scripts and functions reach the lower tiers through the keys they declare (numkeys). A",
        "script that writes keys it did not declare is invisible to the proxy: those writes stay in",
        "hot only. lenient runs such scripts (logged once per script); strict refuses EVAL, EVALSHA",
        "and FCALL with numkeys 0 unless the script cannot write (#!lua flags=no-writes, or _RO).",
    ]) { c, a in
        let v = try one(a, "tiers-scripts").lowercased()
        guard v == "lenient" || v == "strict" else { throw ConfigError("tiers-scripts must be lenient or strict") }
        c.tiersScriptsStrict = v == "strict"
    },
    Directive(name: "keylog-fsync", defaultArgs: "everysec", doc: [
        "When write-behind's key log (<dir>/tierproxy-keylog.tpl) is fsynced, as Redis's appendfsync:",
        "always: a write-behind reply waits until its record is fsynced (group commit); everysec: the",
        "reply does not wait, the record is written at once and fsynced within a second (a crash loses",
        "at most the last second's records: those keys stay in hot, not yet copied below); no: the",
        "kernel decides. Write-through is unaffected.",
    ]) { c, a in
        let v = try one(a, "keylog-fsync").lowercased()
        guard let sync = KeyLog.Sync(rawValue: v) else { throw ConfigError("keylog-fsync must be always, everysec or no") }
        c.keyLogSync = sync
    },
    Directive(name: "write-behind-delay", defaultArgs: "1000", doc: [
        "Milliseconds a write-behind key waits, from its first unflushed write, before it is copied",
        "below: every later write of it meanwhile is folded into that one copy, and a burst of writes",
        "is answered before the lower tiers are written. Reads see the latest write all along. 0",
        "flushes as soon as a batch is ready.",
    ]) { c, a in c.writeBehindDelayMillis = try Units.int(try one(a, "write-behind-delay"), 0...3_600_000) },
    Directive(name: "negative-cache-ms", defaultArgs: "1000", doc: [
        "How long a key found absent in every tier is answered as absent without asking again",
        "(writes through the proxy end it at once); 0 turns the cache off.",
    ]) { c, a in c.negativeCacheMillis = try Units.int(try one(a, "negative-cache-ms"), 0...3_600_000) },
    Directive(name: "tier-slowlog-threshold", defaultArgs: "500", doc: [
        "A tier operation (lookup, write, delete) slower than this many milliseconds is logged with its",
        "tier, op, duration, outcome and the key's hash; -1 = never, 0 = every operation.",
        "Runtime: TIERS CONFIG SET tier-slowlog-threshold <ms>.",
    ]) { c, a in c.tierSlowlogThresholdMillis = try Units.int(try one(a, "tier-slowlog-threshold"), -1...3_600_000) },
    Directive(name: "log-keys", defaultArgs: "no", doc: [
        "yes: tier log lines (slow-log) print the key itself; no: a hash of it (keys may be personal data).",
    ]) { c, a in c.logKeys = try Units.bool(try one(a, "log-keys")) },
    Directive(name: "metrics-port", defaultArgs: "0", doc: [
        "HTTP port for /metrics (Prometheus text), /healthz, /readyz and /healthz/memory; 0 = off.",
        "Served by libevent's evhttp on a thread of its own, never on a client loop.",
    ]) { c, a in c.metricsPort = try Units.int(try one(a, "metrics-port"), 0...65535) },
    Directive(name: "metrics-bind", defaultArgs: "127.0.0.1", doc: [
        "Address the metrics endpoint listens on (0.0.0.0 in a container, so Prometheus can reach it).",
    ]) { c, a in c.metricsBind = try one(a, "metrics-bind") },
    Directive(name: "health-probe-interval", defaultArgs: "5000", doc: [
        "Milliseconds between the health probes of hot (PING) and each lower tier (its check) that",
        "/readyz and /healthz/memory report, and that log tier state changes (up, degraded, down).",
    ]) { c, a in c.healthProbeIntervalMillis = try Units.int(try one(a, "health-probe-interval"), 100...3_600_000) },
    Directive(name: "tiers-create", defaultArgs: "no", doc: [
        "yes: at start, create the Cosmos DB database and container and the Blob container if they are",
        "missing (emulators, first deployments, docker-compose); no: they must exist.",
    ]) { c, a in c.tiersCreate = try Units.bool(try one(a, "tiers-create")) },
    text("tier-tls-ca-cert-file", \.tierTLSCaCertFile, [
        "PEM file of CA certificates trusted for HTTPS to Cosmos DB, Blob Storage, Entra ID and",
        "Key Vault; empty = the system's store. Certificates are always verified.",
        "(Not tls-ca-cert-file: that one is Redis's, for the certificates of clients on tls-port.)",
    ]),
]

/// Every directive, in the order `conf/tierproxy.conf` documents them: the proxy's own, then
/// TLS for clients (`ClientTLSDirectives.swift`).
let configTable: [Directive] = proxyDirectives + clientTLSDirectives

let configDirectives: [String: Directive] = Dictionary(uniqueKeysWithValues: configTable.map { ($0.name, $0) })
