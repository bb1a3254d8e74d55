import Reactor
import Tiers
import Glibc

/// `tierproxy tiers check`: builds the configured warm and cold tiers with their credentials,
/// asks each to prove it can reach its store, and prints one line per tier. Exit 0 if all are ok.
func runTiersCheck(config: Config, environment: [String: String]) -> Int32 {
    let tiers: TierSetup
    do {
        tiers = try TierSetup(config: config, environment: environment)
    } catch {
        print("tiers: configuration error: \(error)")
        return 1
    }
    defer { tiers.close() }
    let loop = EventLoop()
    var lines: [String] = []
    var failures = 0
    loop.execute {
        tiers.resolveSecrets(on: loop) { errors in
            for e in errors { lines.append("secret: FAILED: \(e)"); failures += 1 }
            do {
                let (warm, cold) = try tiers.tiers(for: loop)
                TierStatus.check(warm: warm, cold: cold, config: tiers.config) { results in
                    for r in results {
                        lines.append(r.line)
                        if !r.ok { failures += 1 }
                    }
                    loop.stop()
                }
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
    for line in lines { print(line) }
    return failures == 0 ? 0 : 1
}

/// One line per tier: "warm sqlite:/data/warm.db: ok" or "cold blob …: FAILED: …".
enum TierStatus {
    struct Result { let line: String; let ok: Bool }

    /// Checks warm then cold (in that order, so lines come out stable) and completes with both.
    static func check(warm: Tier?, cold: Tier?, config: TierConfig, _ done: @escaping ([Result]) -> Void) {
        let checks: [(String, TierSpec, Tier?)] = [("warm", config.warm, warm), ("cold", config.cold, cold)]
        var results: [Result] = []
        var index = 0
        func next() {
            guard index < checks.count else { done(results); return }
            let (role, spec, tier) = checks[index]
            index += 1
            guard let tier else { results.append(Result(line: "\(role) none: disabled", ok: true)); next(); return }
            tier.check { outcome in
                results.append(line(role, spec, outcome))
                next()
            }
        }
        next()
    }

    private static func line(_ role: String, _ spec: TierSpec, _ outcome: Swift.Result<String, TierError>) -> Result {
        switch outcome {
        case .success(let detail):
            // Backends describe what they reached, often starting with "ok" and their own name.
            var extra = Substring(detail)
            for prefix in ["ok", ":", " ", "\(role) \(spec)", "\(spec)", ",", " "] where extra.hasPrefix(prefix) {
                extra = extra.dropFirst(prefix.count)
            }
            return Result(line: "\(role) \(spec): ok" + (extra.isEmpty ? "" : " (\(extra))"), ok: true)
        case .failure(let e):
            return Result(line: "\(role) \(spec): FAILED: \(e)", ok: false)
        }
    }
}
