import Foundation
import Testing
@testable import Tiers

/// `GlobPattern` against Redis's own matcher: the same keys and patterns, asked of a real
/// redis-server with `KEYS` and `SCAN MATCH`.
@Suite struct CascadeGlobTests {
    @Test func literalCases() {
        func m(_ p: String, _ k: String) -> Bool { GlobPattern(p).matches(Array(k.utf8)) }
        #expect(m("session:*", "session:abc"))
        #expect(m("session:*", "session:"))
        #expect(!m("session:*", "sessions:abc"))
        #expect(m("h?llo", "hello") && !m("h?llo", "hllo"))
        #expect(m("h[ae]llo", "hallo") && !m("h[ae]llo", "hillo"))
        #expect(m("h[^e]llo", "hallo") && !m("h[^e]llo", "hello"))
        #expect(m("h[a-b]llo", "hbllo") && !m("h[a-b]llo", "hcllo"))
        #expect(m("h[b-a]llo", "hbllo"))           // reversed range
        #expect(m("a\\*b", "a*b") && !m("a\\*b", "axb"))
        #expect(m("a\\", "a\\"))                   // trailing backslash is literal
        #expect(m("[abc", "a") && m("[abc", "c"))  // unclosed set ends with the pattern
        #expect(m("", "") && !m("", "a"))
        #expect(m("*", "") && !m("**", ""))       // KEYS's "*" shortcut; stringmatchlen itself says no
        #expect(m("a**b", "ab") && m("*a*b*", "xxaxxbxx"))
        // Binary-safe: NUL and 0xFF are ordinary bytes.
        #expect(GlobPattern([0x61, 0x00, 0x2A]).matches([0x61, 0x00, 0xFF, 0xFE]))
        #expect(!GlobPattern([0x61, 0x00, 0x2A]).matches([0x61, 0x01]))
        #if arch(x86_64)
        // Range ends compare as signed C chars on x86-64: [\x00-\xff] is -1...0.
        #expect(!GlobPattern([0x5B, 0x00, 0x2D, 0xFF, 0x5D]).matches([0x80]))
        #expect(GlobPattern([0x5B, 0x00, 0x2D, 0xFF, 0x5D]).matches([0xFF]))
        #expect(GlobPattern([0x5B, 0xFF, 0x2D, 0x63, 0x5D]).matches(Array("\\".utf8)))
        #endif
    }

    @Test func pathologicalPatternIsFast() {
        // Without Redis's skipLongerMatches this takes exponential time.
        let pattern = GlobPattern(String(repeating: "a*", count: 30) + "b")
        let key = [UInt8](repeating: UInt8(ascii: "a"), count: 60)
        let clock = ContinuousClock()
        let elapsed = clock.measure { #expect(!pattern.matches(key)) }
        #expect(elapsed < .seconds(1))
    }

    @Test func agreesWithRedisKeysAndScan() throws {
        var rng = SplitMix(seed: 0x5EED_C0DE)
        let keyAlphabet: [UInt8] = Array("abcz-^[]\\*?".utf8) + [0x00, 0xFF]
        let patternAlphabet: [UInt8] = Array("abcz".utf8) + Array("*?[]^-\\".utf8) + Array("*?[]^-\\".utf8) + [0x00, 0xFF]
        var keySet = Set<[UInt8]>()
        keySet.insert([])
        while keySet.count < 400 {
            keySet.insert((0..<rng.below(7)).map { _ in keyAlphabet[rng.below(keyAlphabet.count)] })
        }
        let keys = Array(keySet)
        var patterns: [[UInt8]] = [
            "", "*", "**", "?", "[", "[a", "[^", "[^]", "[]", "[]]", "[]a]", "\\", "a\\", "\\\\", "[\\]]", "[a-]",
            "[-a]", "[z-a]", "[a-\\]", "[\\-]", "[^a-c]*", "*[", "*\\", "a*?", "?*?", "*a*b*c*", "[[]", "[*]", "[?]",
        ].map { Array($0.utf8) }
        for _ in 0..<1500 {
            patterns.append((0..<rng.below(9)).map { _ in patternAlphabet[rng.below(patternAlphabet.count)] })
        }

        let redis = try askRedis(keys: keys, patterns: patterns)
        var mismatches = [String]()
        for (i, pattern) in patterns.enumerated() {
            let glob = GlobPattern(pattern)
            let ours = Set(keys.indices.filter { glob.matches(keys[$0]) })
            for (command, theirs) in [("KEYS", redis.keys[i]), ("SCAN MATCH", redis.scan[i])] where ours != theirs {
                let extra = ours.subtracting(theirs).map { hex(keys[$0]) }.sorted()
                let missing = theirs.subtracting(ours).map { hex(keys[$0]) }.sorted()
                mismatches.append("\(command) \(hex(pattern)): we also match \(extra), we miss \(missing)")
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) disagreements, first: \(mismatches.prefix(5))")
        #expect(redis.keys.contains { $0.count > 1 && $0.count < keys.count }, "patterns should select some keys")
    }
}

private func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
}

/// Loads `keys` into a fresh redis-server on a free port and returns, for each pattern, the
/// indices of the keys `KEYS pattern` and `SCAN 0 MATCH pattern` (to the end) answer.
private func askRedis(keys: [[UInt8]], patterns: [[UInt8]]) throws -> (keys: [Set<Int>], scan: [Set<Int>]) {
    let input = FileManager.default.temporaryDirectory.appendingPathComponent("cascade-glob-\(getpid()).json")
    let payload: [String: Any] = ["keys": keys.map(hex), "patterns": patterns.map(hex)]
    try JSONSerialization.data(withJSONObject: payload).write(to: input)
    defer { try? FileManager.default.removeItem(at: input) }
    let (status, out, err) = runPython(redisGlobScript, args: [input.path])
    guard status == 0, let data = out.data(using: .utf8),
          let answer = try JSONSerialization.jsonObject(with: data) as? [String: [[Int]]],
          let k = answer["keys"], let s = answer["scan"], k.count == patterns.count, s.count == patterns.count else {
        throw TierError.failed("redis glob oracle failed (status \(status)): \(err.suffix(2000))")
    }
    return (k.map(Set.init), s.map(Set.init))
}

/// Starts redis-server on a free port, waits for PING within a deadline, loads the keys, asks.
private let redisGlobScript = #"""
import json, os, shutil, socket, subprocess, sys, tempfile, time
import redis

data = json.load(open(sys.argv[1]))
keys = [bytes.fromhex(k) for k in data["keys"]]
patterns = [bytes.fromhex(p) for p in data["patterns"]]
index = {k: i for i, k in enumerate(keys)}

s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
workdir = tempfile.mkdtemp(prefix="cascade-glob-")
server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--dir", workdir],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    deadline = time.monotonic() + 15
    while True:
        try:
            r.ping()
            break
        except redis.ConnectionError:
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit("redis-server did not answer PING on port %d" % port)
            time.sleep(0.01)
    pipe = r.pipeline(transaction=False)
    for i, k in enumerate(keys):
        pipe.set(k, i)
    pipe.execute()
    assert r.dbsize() == len(keys)
    pipe = r.pipeline(transaction=False)
    for p in patterns:
        pipe.keys(p)
    by_keys = [sorted(index[k] for k in found) for found in pipe.execute()]
    by_scan = [sorted(index[k] for k in set(r.scan_iter(match=p, count=1000))) for p in patterns]
    print(json.dumps({"keys": by_keys, "scan": by_scan}))
finally:
    # SHUTDOWN rather than SIGTERM: a signal mask inherited from the test process may block it.
    try:
        redis.Redis(host="127.0.0.1", port=port, socket_timeout=5).shutdown(nosave=True)
    except redis.RedisError:
        pass
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    shutil.rmtree(workdir, ignore_errors=True)
"""#

extension SplitMix {
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}
