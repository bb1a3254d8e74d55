import Foundation
import Reactor
import Tiers

// tierbench: puts and gets per second for each tier backend at N requests in flight, on one loop.
//
//   tierbench [--backends sqlite,dir,cosmos,blob] [--ops N] [--sqlite-ops N] [--inflight 64] [--value-bytes 100]
//
// Cosmos and Blob need the emulators (bench/tiers.sh starts them with a fixed latency) and read
// COSMOS_ENDPOINT, COSMOS_KEY, BLOB_ACCOUNT_URL, BLOB_KEY, EMULATOR_LATENCY_MS from the environment.

struct Options {
    var backends = ["sqlite", "dir", "cosmos", "blob"]
    var ops = 1000
    var sqliteOps = 100_000
    var inflight = 64
    var valueBytes = 100
}

func parseOptions() -> Options {
    var o = Options()
    var args = CommandLine.arguments.dropFirst().makeIterator()
    while let a = args.next() {
        let v = args.next() ?? ""
        switch a {
        case "--backends": o.backends = v.split(separator: ",").map(String.init)
        case "--ops": o.ops = Int(v) ?? o.ops
        case "--sqlite-ops": o.sqliteOps = Int(v) ?? o.sqliteOps
        case "--inflight": o.inflight = Int(v) ?? o.inflight
        case "--value-bytes": o.valueBytes = Int(v) ?? o.valueBytes
        default: print("unknown option \(a)"); exit(2)
        }
    }
    return o
}

/// Runs `count` operations with at most `inflight` outstanding, on `loop`; returns (seconds, errors, peak).
func drive(loop: EventLoop, count: Int, inflight: Int, _ op: @escaping (Int, @escaping (Bool) -> Void) -> Void) -> (Double, Int, Int) {
    var next = 0, finished = 0, errors = 0, outstanding = 0, peak = 0
    let start = DispatchTime.now().uptimeNanoseconds
    var finishedAll = false
    func launch() {
        while outstanding < inflight && next < count {
            let i = next
            next += 1
            outstanding += 1
            peak = max(peak, outstanding)
            op(i) { ok in
                outstanding -= 1
                finished += 1
                if !ok { errors += 1 }
                if finished == count { finishedAll = true; loop.stop() } else { launch() }
            }
        }
    }
    launch()
    if !finishedAll { loop.run() }
    let secs = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    return (secs, errors, peak)
}

struct Row {
    var backend: String, op: String, count: Int, seconds: Double, errors: Int, peak: Int, note: String
}

func bench(_ name: String, tier: Tier, loop: EventLoop, count: Int, options: Options, rows: inout [Row],
           note: (String, Double) -> String) {
    let value = [UInt8](repeating: UInt8(ascii: "v"), count: options.valueBytes)
    let keys = (0..<count).map { TierKey("bench:\(name):\($0)") }
    var reported = false
    func report(_ r: Result<some Any, TierError>) {
        if case .failure(let e) = r, !reported { reported = true; print("  \(name): first error: \(e)") }
    }
    let (ps, pe, pp) = drive(loop: loop, count: count, inflight: options.inflight) { i, done in
        tier.put(keys[i], Entry(value: value)) { r in
            report(r)
            done((try? r.get()) != nil)
        }
    }
    rows.append(Row(backend: name, op: "put", count: count, seconds: ps, errors: pe, peak: pp, note: note("put", ps)))
    let (gs, ge, gp) = drive(loop: loop, count: count, inflight: options.inflight) { i, done in
        tier.get(keys[i]) { r in
            report(r)
            done((try? r.get())??.value == value)
        }
    }
    rows.append(Row(backend: name, op: "get", count: count, seconds: gs, errors: ge, peak: gp, note: note("get", gs)))
}

/// The emulator's own count of requests it was serving at once (its /__stats `max_in_flight`).
func emulatorMaxInFlight(_ origin: String, http: HTTPClient, loop: EventLoop, reset: Bool) -> Int? {
    var out: Int?
    var finished = false
    http.send(HTTPRequest(method: reset ? "DELETE" : "GET", url: origin + "/__stats")) { r in
        if case .success(let resp) = r { out = JSONValue.parse(resp.body)?["max_in_flight"]?.int.map(Int.init) }
        finished = true
        loop.stop()
    }
    if !finished { loop.run() }
    return out
}

func origin(_ url: String) -> String {
    let parts = url.split(separator: "/", omittingEmptySubsequences: false)
    return parts.count >= 3 ? parts[0..<3].joined(separator: "/") : url
}

func hostFacts() -> (Int, String) {
    let cpus = sysconf(Int32(_SC_NPROCESSORS_ONLN))
    let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
    let model = info.split(separator: "\n").first { $0.hasPrefix("model name") }
        .map { $0.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "" } ?? "unknown"
    return (cpus, model)
}

let options = parseOptions()
let env = ProcessInfo.processInfo.environment
let loop = EventLoop()
var rows = [Row]()
var failures = [String]()
let latency = Double(env["EMULATOR_LATENCY_MS"] ?? "20") ?? 20
let tmp = NSTemporaryDirectory() + "tierbench-\(getpid())"
try? FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: tmp) }

for backend in options.backends {
    switch backend {
    case "sqlite":
        let store = try SQLiteTier(path: tmp + "/warm.db")
        bench("sqlite", tier: store.tier(for: loop), loop: loop, count: options.sqliteOps, options: options, rows: &rows) { op, s in
            let rate = Double(options.sqliteOps) / s
            let need = op == "put" ? 20_000.0 : 50_000.0
            if rate < need { failures.append("sqlite \(op) \(Int(rate))/s < \(Int(need))/s") }
            return rate >= need ? "≥ \(Int(need / 1000))k/s ✓" : "< \(Int(need / 1000))k/s ✗"
        }
        store.close()
    case "dir":
        let store = try DirectoryTier(path: tmp + "/cold")
        bench("dir", tier: store.tier(for: loop), loop: loop, count: options.ops, options: options, rows: &rows) { _, _ in "" }
        store.close()
    case "cosmos", "blob":
        let http = HTTPClient(loop: loop)
        let tier: Tier
        if backend == "cosmos" {
            guard let endpoint = env["COSMOS_ENDPOINT"], let key = env["COSMOS_KEY"] else { print("cosmos: set COSMOS_ENDPOINT/COSMOS_KEY"); continue }
            let cosmos = try CosmosTier(loop: loop, config: CosmosTierConfig(endpoint: endpoint), auth: .sharedKey(SecretSetting(key)), http: http)
            var made: Result<Void, TierError>?
            cosmos.createDatabaseAndContainer { made = $0; loop.stop() }
            if made == nil { loop.run() }
            tier = cosmos
        } else {
            guard let url = env["BLOB_ACCOUNT_URL"], let key = env["BLOB_KEY"] else { print("blob: set BLOB_ACCOUNT_URL/BLOB_KEY"); continue }
            let blob = BlobTier(loop: loop, config: BlobTierConfig(accountURL: url), auth: .sharedKey(SecretSetting(key)), http: http)
            var made: Result<Void, TierError>?
            blob.createContainer { made = $0; loop.stop() }
            if made == nil { loop.run() }
            tier = blob
        }
        // Serial time would be ops × latency; 32 overlapping requests would take 1/32 of it.
        let bound = Double(options.ops) * latency / 32 / 1000
        let emuOrigin = origin(backend == "cosmos" ? env["COSMOS_ENDPOINT"]! : env["BLOB_ACCOUNT_URL"]!)
        _ = emulatorMaxInFlight(emuOrigin, http: http, loop: loop, reset: true)
        bench(backend, tier: tier, loop: loop, count: options.ops, options: options, rows: &rows) { op, s in
            let serverPeak = emulatorMaxInFlight(emuOrigin, http: http, loop: loop, reset: false) ?? -1
            _ = emulatorMaxInFlight(emuOrigin, http: http, loop: loop, reset: true)
            if s >= bound { failures.append("\(backend) \(op): \(String(format: "%.3f", s)) s ≥ \(String(format: "%.3f", bound)) s") }
            if serverPeak >= 0 && serverPeak < 32 { failures.append("\(backend) \(op): server saw only \(serverPeak) at once") }
            return String(format: "server saw %d at once; %.0f ms %@ %.0f ms (1000×%.0f ms/32)", serverPeak, s * 1000,
                          s < bound ? "<" : "≥", bound * 1000, latency)
        }
        http.close()
    default:
        print("unknown backend \(backend)")
    }
}

let (cpus, model) = hostFacts()
print("\ntierbench — one loop, \(options.inflight) in flight, \(options.valueBytes)-byte values; host: \(cpus) CPUs, \(model); emulator latency \(Int(latency)) ms")
print("backend  op    count   seconds      ops/s  errors  peak  note")
for r in rows {
    func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
    print(pad(r.backend, 8) + " " + pad(r.op, 4) + String(format: " %7d  %8.3f  %9.0f  %6d  %4d  ", r.count, r.seconds,
                                                            Double(r.count) / r.seconds, r.errors, r.peak) + r.note)
}
if failures.isEmpty { print("\nall requirements met") } else {
    print("\nNOT MET: " + failures.joined(separator: "; "))
    exit(1)
}
