import Testing
@testable import RespServer
import Glibc

@Suite struct ConfigTests {
    @Test func splitsConfLinesLikeRedis() throws {
        #expect(try ConfigLoader.split("bind 127.0.0.1 -::1") == ["bind", "127.0.0.1", "-::1"])
        #expect(try ConfigLoader.split("logfile \"/tmp/a b.log\"") == ["logfile", "/tmp/a b.log"])
        #expect(try ConfigLoader.split("x \"a\\x41\\n\" 'it\\'s'") == ["x", "aA\n", "it's"])
        #expect(throws: ConfigError.self) { try ConfigLoader.split("x \"open") }
    }

    @Test func memoryUnitsFollowRedisConf() throws {
        #expect(try Units.memory("1gb") == 1 << 30)
        #expect(try Units.memory("512MB") == 512 << 20)
        #expect(try Units.memory("100k") == 100_000)
        #expect(try Units.memory("42") == 42)
        #expect(throws: ConfigError.self) { try Units.memory("12parsecs") }
    }

    @Test func upstreamURLs() throws {
        let u = try UpstreamURL(parsing: "redis://app:p%40ss@cache.example:6390/3")
        #expect(u.host == "cache.example" && u.port == 6390 && u.db == 3)
        #expect(u.user == "app" && u.password == "p@ss" && !u.tls)
        #expect(u.description == "redis://app:***@cache.example:6390/3")
        let v = try UpstreamURL(parsing: "rediss://:secret@[::1]:6380")
        #expect(v.tls && v.host == "::1" && v.port == 6380 && v.user == nil && v.password == "secret")
        #expect(throws: ConfigError.self) { try UpstreamURL(parsing: "http://x") }
    }

    @Test func flagsBeatEnvBeatFile() throws {
        let path = writeConf("port 7001\nmaxclients 5\nupstream redis://10.0.0.1:7000\nclient-output-buffer-limit pubsub 1mb 512kb 5\n")
        defer { unlink(path) }

        let fileOnly = try ConfigLoader(arguments: [path]).load(environment: [:])
        #expect(fileOnly.port == 7001 && fileOnly.maxclients == 5 && fileOnly.upstream.port == 7000)
        #expect(fileOnly.outputLimitPubsub == OutputLimit(hard: 1 << 20, soft: 512 << 10, softSeconds: 5))

        let env = ["TIERPROXY_PORT": "7002", "REDIS_HOST": "127.0.0.9", "REDIS_PORT": "7009"]
        let withEnv = try ConfigLoader(arguments: [path]).load(environment: env)
        #expect(withEnv.port == 7002 && withEnv.upstream.host == "127.0.0.9" && withEnv.upstream.port == 7009)

        let withFlags = try ConfigLoader(arguments: ["--config", path, "--port", "7003", "--bind", "127.0.0.1", "::1"])
            .load(environment: env)
        #expect(withFlags.port == 7003 && withFlags.bind == ["127.0.0.1", "::1"] && withFlags.maxclients == 5)
    }

    @Test func badDirectivesAreReportedWithTheirLine() throws {
        let path = writeConf("port 7001\n\nmaxclients many\n")
        defer { unlink(path) }
        do {
            _ = try ConfigLoader(arguments: [path]).load(environment: [:])
            Issue.record("a bad value was accepted")
        } catch let e as ConfigError {
            #expect(e.description.contains(":3:"))
            #expect(e.description.contains("maxclients"))
        }
        #expect(throws: ConfigError.self) { try ConfigLoader(arguments: ["--no-such-thing", "1"]) }
    }

    /// rediss:// and REDIS_SSL=true mean TLS; the one context is built from upstream-tls-*,
    /// and files that cannot be read are a configuration error at start, not per client.
    @Test func tlsUpstreamSettings() throws {
        var c = try ConfigLoader(arguments: ["--upstream", "rediss://h:6380"]).load(environment: [:])
        #expect(c.upstream.tls)
        #expect(try UpstreamTLS.prepare(&c).isEmpty)
        #expect(c.upstreamTLS?.serverName == "h")
        #expect(c.upstreamTLS?.verifiesPeer == true)
        #expect(try ConfigLoader(arguments: []).load(environment: ["REDIS_SSL": "true"]).upstream.tls)
        #expect(try ConfigLoader(arguments: []).load(environment: ["REDIS_SSL": "false"]).upstream.tls == false)
        var named = try ConfigLoader(arguments: ["--upstream", "rediss://10.0.0.1:6380", "--upstream-tls-server-name", "x.example"])
            .load(environment: ["TIERPROXY_UPSTREAM_TLS_INSECURE": "yes"])
        #expect(try UpstreamTLS.prepare(&named).count == 1)          // the insecure warning
        #expect(named.upstreamTLS?.serverName == "x.example")
        #expect(named.upstreamTLS?.verifiesPeer == false)
        var missing = try ConfigLoader(arguments: ["--upstream", "rediss://h:6380", "--upstream-tls-ca-cert-file", "/nonexistent/ca.pem"])
            .load(environment: [:])
        #expect(throws: ConfigError.self) { try UpstreamTLS.prepare(&missing) }
        var halfPair = try ConfigLoader(arguments: ["--upstream", "rediss://h:6380", "--upstream-tls-cert-file", "/x.pem"])
            .load(environment: [:])
        #expect(throws: ConfigError.self) { try UpstreamTLS.prepare(&halfPair) }
        var plain = try ConfigLoader(arguments: ["--upstream-tls-ca-cert-file", "/x.pem"]).load(environment: [:])
        #expect(try UpstreamTLS.prepare(&plain).count == 1)          // set but ignored: said so
        #expect(plain.upstreamTLS == nil)
    }

    /// The committed conf file is the generated template, so it documents every directive.
    @Test func shippedConfFileMatchesTheTable() throws {
        let here = #filePath
        let root = here.components(separatedBy: "/Tests/")[0]
        let shipped = readWholeFile(root + "/conf/tierproxy.conf")
        #expect(shipped == ConfigLoader.template(), "regenerate: tierproxy --print-config > conf/tierproxy.conf")
        // And it loads back to the defaults.
        let fromFile = try ConfigLoader(arguments: [root + "/conf/tierproxy.conf"]).load(environment: [:])
        let defaults = try ConfigLoader(arguments: []).load(environment: [:])
        #expect(fromFile.port == defaults.port && fromFile.bind == defaults.bind
                && fromFile.outputLimitPubsub == defaults.outputLimitPubsub)
    }

    /// The table is the one source of defaults: a `Config()` (what code that loads nothing
    /// gets) holds, setting by setting, what the shipped conf file documents and loads to.
    @Test func configDefaultsAreTheDocumentedOnes() throws {
        let root = #filePath.components(separatedBy: "/Tests/")[0]
        let fromFile = try ConfigLoader(arguments: [root + "/conf/tierproxy.conf"]).load(environment: [:])
        func settings(_ c: Config) -> [String: String] {
            // The users are built by the loader from the acl lines, which both have alike.
            var out: [String: String] = [:]
            for child in Mirror(reflecting: c).children where child.label != "aclUsers" {
                out[child.label ?? "?"] = describe(child.value)
            }
            return out
        }
        // Field by field, sets in order (two equal sets may list their members differently).
        func describe(_ value: Any) -> String {
            let m = Mirror(reflecting: value)
            if m.children.isEmpty { return String(describing: value) }
            let parts = m.children.map { ($0.label ?? "") + ":" + describe($0.value) }
            return m.displayStyle == .set || m.displayStyle == .dictionary
                ? "{" + parts.sorted().joined(separator: ",") + "}" : "(" + parts.joined(separator: ",") + ")"
        }
        let blank = settings(Config()), documented = settings(fromFile)
        #expect(blank.count == documented.count && blank.count > 40)
        for (name, value) in documented {
            #expect(blank[name] == value, "Config().\(name)")
        }
        #expect(Config().bind == ["127.0.0.1", "-::1"])
    }
}

/// Writes `text` to a fresh temp file and returns its path.
private func writeConf(_ text: String) -> String {
    var template = Array("/tmp/tierproxy-config-XXXXXX".utf8CString)
    let fd = mkstemp(&template)
    _ = text.withCString { write(fd, $0, strlen($0)) }
    close(fd)
    return String(cString: template)
}

private extension String {
    func components(separatedBy sep: String) -> [String] {
        var out = [String](); var rest = self[...]
        while let r = rest.firstRange(of: sep) { out.append(String(rest[..<r.lowerBound])); rest = rest[r.upperBound...] }
        out.append(String(rest)); return out
    }
}
