import Foundation
import Reactor
@testable import Tiers

/// Sends one request on a private loop and waits for the answer (test set-up and control calls).
func syncRequest(_ request: HTTPRequest, options: HTTPClientOptions = HTTPClientOptions()) -> Result<HTTPResponse, HTTPError> {
    let loop = EventLoop()
    let client = HTTPClient(loop: loop, options: options)
    var result: Result<HTTPResponse, HTTPError> = .failure(.transport("no answer"))
    runLoop(loop, timeoutMillis: 15_000) { finish in client.send(request) { result = $0; finish() } }
    client.close()
    return result
}

/// Runs a tier operation to completion on `loop`.
func runOp<T>(_ loop: EventLoop, timeoutMillis: Int = 30_000,
             _ op: (@escaping (T) -> Void) -> Void) -> T? {
    var out: T?
    runLoop(loop, timeoutMillis: timeoutMillis) { finish in op { out = $0; finish() } }
    return out
}

/// The Python emulators (Tests/emulators) in a child process on free loopback ports.
final class Emulators {
    let child: ChildProcess
    let info: [String: Any]

    init(latencyMillis: Int = 0, tls: Bool = false) throws {
        var args = ["python3", "Tests/fixtures/orphan_guard.py", "-m", "Tests.emulators", "--latency-ms", String(latencyMillis)]
        if tls { args.append("--tls") }
        child = try ChildProcess(args, cwd: repoRoot, stderrPath: "/tmp/tierproxy-emulators-\(getpid()).log")
        guard let line = child.waitForLine(prefix: "EMULATORS READY", timeoutMillis: 20_000),
              let data = line.dropFirst("EMULATORS READY ".count).data(using: .utf8),
              let json = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            child.stop()
            throw NSError(domain: "Emulators", code: 1, userInfo: [NSLocalizedDescriptionKey: "emulators did not start"])
        }
        info = json
    }

    subscript(_ k: String) -> String { info[k] as? String ?? "" }
    var cosmos: String { self["cosmos"] }
    var cosmosKey: String { self["cosmos_key"] }
    var blob: String { self["blob"] }
    var blobKey: String { self["blob_key"] }
    var identity: String { self["identity"] }

    func stop() { child.stop() }

    private func base(_ service: String) -> String {
        switch service {
        case "cosmos": return cosmos
        case "blob": return urlOrigin(blob).origin
        default: return identity
        }
    }

    @discardableResult
    func control(_ service: String, _ method: String, _ path: String, _ body: Any? = nil) -> (Int, Any?) {
        let bytes = body.map { b -> [UInt8] in
            if let s = b as? String { return Array(s.utf8) }
            return Array(try! JSONSerialization.data(withJSONObject: b))
        } ?? []
        let r = syncRequest(HTTPRequest(method: method, url: base(service) + path,
                                        headers: [("Content-Type", "application/json")], body: bytes))
        guard case .success(let resp) = r else { return (0, nil) }
        return (resp.status, try? JSONSerialization.jsonObject(with: Data(resp.body), options: [.fragmentsAllowed]))
    }

    func addFault(_ service: String, _ rule: [String: Any]) { control(service, "POST", "/__faults", ["rules": [rule]]) }
    func clearFaults() { for s in ["cosmos", "blob", "identity"] { control(s, "DELETE", "/__faults") } }
    func resetStats() { for s in ["cosmos", "blob", "identity"] { control(s, "DELETE", "/__stats") } }
    func stats(_ service: String) -> [String: Any] { control(service, "GET", "/__stats").1 as? [String: Any] ?? [:] }
    func ops(_ service: String) -> [String: Int] { stats(service)["ops"] as? [String: Int] ?? [:] }
    func setSecret(_ name: String, _ value: String) { control("identity", "PUT", "/__secrets/\(name)", value) }
    func configureIdentity(_ cfg: [String: Any]) { control("identity", "POST", "/__config", cfg) }

    /// The emulators shared by every test in this process (started on first use).
    nonisolated(unsafe) static var sharedInstance: Emulators?
    static let sharedLock = NSLock()
    static func shared() throws -> Emulators {
        sharedLock.lock(); defer { sharedLock.unlock() }
        if let e = sharedInstance { return e }
        let e = try Emulators()
        sharedInstance = e
        return e
    }

    /// Creates the Cosmos database/container and the blob container the shared tests use (once).
    nonisolated(unsafe) static var prepared = false
    static func sharedPrepared() throws -> Emulators {
        let e = try shared()
        sharedLock.lock(); defer { sharedLock.unlock() }
        if prepared { return e }
        for pk in ["/id", "/pk", "/service"] {
            try e.createCosmosContainer(pk == "/id" ? "state" : "state" + pk.dropFirst(), partitionKeyPath: pk)
        }
        try e.createBlobContainer("memory")
        prepared = true
        return e
    }

    /// Creates a Cosmos container (and the database) in the emulator, TTL on; an existing one is fine.
    func createCosmosContainer(_ name: String, partitionKeyPath: String = "/id") throws {
        let loop = EventLoop()
        let http = HTTPClient(loop: loop)
        defer { http.close() }
        var cfg = CosmosTierConfig(endpoint: cosmos)
        cfg.container = name
        cfg.partitionKeyPath = partitionKeyPath
        let tier = try CosmosTier(loop: loop, config: cfg, auth: .sharedKey(SecretSetting(cosmosKey)), http: http)
        let r: Result<Void, TierError>? = runOp(loop) { tier.createDatabaseAndContainer(defaultTtl: -1, $0) }
        try r?.get()
    }

    /// Creates a blob container in the emulator; an existing one is fine.
    func createBlobContainer(_ name: String) throws {
        let loop = EventLoop()
        let http = HTTPClient(loop: loop)
        defer { http.close() }
        var cfg = BlobTierConfig(accountURL: blob)
        cfg.container = name
        let tier = BlobTier(loop: loop, config: cfg, auth: .sharedKey(SecretSetting(blobKey)), http: http)
        let r: Result<Void, TierError>? = runOp(loop) { tier.createContainer($0) }
        try r?.get()
    }
}
