import Reactor
import Tiers
import Glibc

/// `tierproxy tiers check`: builds the configured warm and cold tiers with their credentials,
/// asks each to prove it can reach its store, and prints one line per tier. Exit 0 if all are ok.
func runTiersCheck(config: Config, environment: [String: String]) -> Int32 {
    let tierConfig: TierConfig
    do {
        var c = try TierConfig.resolve(warm: config.warm.isEmpty ? nil : config.warm,
                                       cold: config.cold.isEmpty ? nil : config.cold,
                                       dataDir: config.dataDir, environment: environment)
        c.compressThreshold = config.compressThreshold
        tierConfig = c
    } catch {
        print("tiers: configuration error: \(error)")
        return 1
    }
    let loop = EventLoop()
    let remote = RemoteTierMaker(config: tierConfig)
    var lines: [String] = []
    var failures = 0
    func report(_ role: String, _ spec: TierSpec, _ result: Result<String, TierError>) {
        switch result {
        case .success(let detail):
            // Backends describe what they reached, often starting with "ok" and their own name.
            var extra = Substring(detail)
            for prefix in ["ok", ":", " ", "\(role) \(spec)", "\(spec)", ",", " "] where extra.hasPrefix(prefix) {
                extra = extra.dropFirst(prefix.count)
            }
            lines.append("\(role) \(spec): ok" + (extra.isEmpty ? "" : " (\(extra))"))
        case .failure(let e): lines.append("\(role) \(spec): FAILED: \(e)"); failures += 1
        }
    }
    var factory: TierFactory?
    loop.execute {
        remote.resolveSecrets(on: loop) { errors in
            for e in errors { lines.append("secret: FAILED: \(e)"); failures += 1 }
            do {
                let f = try TierFactory(config: tierConfig, remote: remote.maker)
                factory = f
                let (warm, cold) = try f.tiers(for: loop)
                let checks: [(String, TierSpec, Tier?)] = [("warm", tierConfig.warm, warm), ("cold", tierConfig.cold, cold)]
                var index = 0
                func next() {
                    guard index < checks.count else { loop.stop(); return }
                    let (role, spec, tier) = checks[index]
                    index += 1
                    guard let tier else { lines.append("\(role) none: disabled"); next(); return }
                    tier.check { result in report(role, spec, result); next() }
                }
                next()
            } catch {
                lines.append("tiers: FAILED: \(error)")
                failures += 1
                loop.stop()
            }
        }
    }
    // The HTTP tiers have their own deadlines; this one only guards against a silent hang.
    let guardTimer = Timer(loop: loop, millis: 60_000) {
        lines.append("tiers: FAILED: no answer within 60 s")
        failures += 1
        loop.stop()
    }
    loop.run()
    guardTimer.cancel()
    factory?.close()
    for line in lines { print(line) }
    return failures == 0 ? 0 : 1
}
