import Foundation
import Reactor
import XCTest
@testable import Tiers

final class CosmosTierTests: XCTestCase {
    var emu: Emulators!
    var loop: EventLoop!

    override func setUpWithError() throws {
        emu = try Emulators.shared()
        emu.clearFaults()
        loop = EventLoop()
    }

    func makeTier(container: String = "state", pkPath: String = "/id", key: String? = nil,
                  retry: RetryPolicy = RetryPolicy(), create: Bool = true) throws -> CosmosTier {
        var cfg = CosmosTierConfig(endpoint: emu.cosmos)
        cfg.container = container
        cfg.partitionKeyPath = pkPath
        cfg.retry = retry
        let tier = try CosmosTier(loop: loop, config: cfg, auth: .sharedKey(SecretSetting(key ?? emu.cosmosKey)),
                                  http: HTTPClient(loop: loop))
        if create {
            let r: Result<Void, TierError>? = runOp(loop) { tier.createDatabaseAndContainer(defaultTtl: -1, $0) }
            XCTAssertNoThrow(try r?.get())
        }
        return tier
    }

    func uniqueKey(_ prefix: String = "k") -> String { "\(prefix)-\(UInt32.random(in: 0...UInt32.max))" }

    func get(_ tier: Tier, _ key: TierKey) -> Result<Entry?, TierError>? { runOp(loop) { tier.get(key, $0) } }
    func put(_ tier: Tier, _ key: TierKey, _ e: Entry) -> Result<Void, TierError>? { runOp(loop) { tier.put(key, e, $0) } }
    func del(_ tier: Tier, _ key: TierKey) -> Result<Void, TierError>? { runOp(loop) { tier.delete(key, $0) } }

    var pythonEnv: [String: String] { ["COSMOS_ENDPOINT": emu.cosmos, "COSMOS_KEY": emu.cosmosKey] }

    func testRoundTripOfTextBinaryAndOddKeys() throws {
        let tier = try makeTier()
        let cases: [(TierKey, Entry)] = [
            (TierKey(uniqueKey("text")), Entry(value: Array("hello \"wörld\"\n\t✓".utf8))),
            (TierKey(uniqueKey("bin")), Entry(value: [0, 255, 254, 10, 13, 0x80, 0xC3])),
            (TierKey(db: 5, uniqueKey("db5")), Entry(value: Array("in db 5".utf8), type: .hash)),
            (TierKey(uniqueKey("a/b?c#d\\e")), Entry(value: Array("slashy".utf8))),
            (TierKey([0xFF, 0x00, 0x41] + Array(uniqueKey().utf8)), Entry(value: [])),
            (TierKey(String(repeating: "x", count: 300) + uniqueKey()), Entry(value: Array("long key".utf8))),
        ]
        for (k, e) in cases {
            XCTAssertNoThrow(try put(tier, k, e)?.get(), "\(k)")
            XCTAssertEqual(try get(tier, k)?.get(), e, "\(k)")
        }
        for (k, _) in cases {
            XCTAssertNoThrow(try del(tier, k)?.get())
            XCTAssertEqual(try get(tier, k)?.get(), .some(nil))
        }
        XCTAssertNoThrow(try del(tier, cases[0].0)?.get(), "deleting an absent key succeeds")
    }

    func testExpiryIsHonouredAndTtlWritten() throws {
        let tier = try makeTier()
        let k = TierKey(uniqueKey("exp"))
        let soon = wallClockMillis() + 1500
        XCTAssertNoThrow(try put(tier, k, Entry(value: Array("v".utf8), expiresAtMillis: soon))?.get())
        XCTAssertEqual(try get(tier, k)?.get()?.expiresAtMillis, soon)
        let (status, out, err) = runPython("""
        import os, json
        from azure.cosmos import CosmosClient
        c = CosmosClient(os.environ["COSMOS_ENDPOINT"], credential=os.environ["COSMOS_KEY"])
        item = c.get_database_client("memory").get_container_client("state").read_item("\(k.bytes.string)", partition_key="\(k.bytes.string)")
        print(json.dumps({"ttl": item.get("ttl"), "tp_exp": item.get("tp_exp"), "pk": item.get("pk"), "value": item.get("value")}))
        """, env: pythonEnv)
        XCTAssertEqual(status, 0, err)
        let doc = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any]
        XCTAssertEqual(doc["ttl"] as? Int, 2)
        XCTAssertEqual(doc["tp_exp"] as? String, String(soon))
        XCTAssertEqual(doc["pk"] as? String, k.bytes.string)
        usleep(1_600_000)
        XCTAssertEqual(try get(tier, k)?.get(), .some(nil))

        // An entry already expired is not stored (it deletes).
        let k2 = TierKey(uniqueKey("exp2"))
        XCTAssertNoThrow(try put(tier, k2, Entry(value: [1]))?.get())
        XCTAssertNoThrow(try put(tier, k2, Entry(value: [2], expiresAtMillis: wallClockMillis() - 10))?.get())
        XCTAssertEqual(try get(tier, k2)?.get(), .some(nil))
    }

    func testTooLargeValue() throws {
        let tier = try makeTier()
        let big = Entry(value: [UInt8](repeating: UInt8(ascii: "a"), count: 2 * 1024 * 1024))
        guard case .failure(.tooLarge)? = put(tier, TierKey(uniqueKey("big")), big) else { return XCTFail("expected tooLarge") }
        let fits = Entry(value: [UInt8](repeating: UInt8(ascii: "a"), count: 1024 * 1024))
        XCTAssertNoThrow(try put(tier, TierKey(uniqueKey("fits")), fits)?.get())
    }

    func testSeedItemsWrittenByPythonSDKReadHere() throws {
        let tier = try makeTier()
        let k = uniqueKey("seed")
        let (status, _, err) = runPython("""
        import os, time
        from azure.cosmos import CosmosClient
        c = CosmosClient(os.environ["COSMOS_ENDPOINT"], credential=os.environ["COSMOS_KEY"])
        cont = c.get_database_client("memory").get_container_client("state")
        cont.upsert_item({"id": "\(k)", "pk": "\(k)", "value": "from python ✓"})
        cont.upsert_item({"id": "\(k)-ttl", "pk": "\(k)-ttl", "value": "short", "ttl": 600})
        """, env: pythonEnv)
        XCTAssertEqual(status, 0, err)
        XCTAssertEqual(try get(tier, TierKey(k))?.get(), Entry(value: Array("from python ✓".utf8)))
        let withTTL = try XCTUnwrap(try get(tier, TierKey(k + "-ttl"))?.get())
        XCTAssertEqual(withTTL.value, Array("short".utf8))
        let exp = try XCTUnwrap(withTTL.expiresAtMillis)
        XCTAssert(abs(exp - (wallClockMillis() + 600_000)) < 5_000, "expiry from _ts + ttl")
    }

    func testItemsWrittenHereReadByPythonSDK() throws {
        let tier = try makeTier()
        let k = uniqueKey("ours")
        XCTAssertNoThrow(try put(tier, TierKey(k), Entry(value: Array("from swift ✓".utf8)))?.get())
        let bin = uniqueKey("ours-bin")
        XCTAssertNoThrow(try put(tier, TierKey(bin), Entry(value: [0xFF, 0xFE, 0]))?.get())
        let (status, out, err) = runPython("""
        import os, json, base64
        from azure.cosmos import CosmosClient
        c = CosmosClient(os.environ["COSMOS_ENDPOINT"], credential=os.environ["COSMOS_KEY"])
        cont = c.get_database_client("memory").get_container_client("state")
        a = cont.read_item("\(k)", partition_key="\(k)")
        b = cont.read_item("\(bin)", partition_key="\(bin)")
        print(json.dumps([a["id"], a["pk"], a["value"], b["value"], list(base64.b64decode(b["tp_b64"]))]))
        """, env: pythonEnv)
        XCTAssertEqual(status, 0, err)
        let arr = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [Any]
        XCTAssertEqual(arr[0] as? String, k)
        XCTAssertEqual(arr[1] as? String, k)
        XCTAssertEqual(arr[2] as? String, "from swift ✓")
        XCTAssert(arr[3] is NSNull)
        XCTAssertEqual(arr[4] as? [Int], [255, 254, 0])
    }

    func testOtherPartitionKeyPaths() throws {
        for path in ["/pk", "/service"] {
            let tier = try makeTier(container: "state" + path.dropFirst(), pkPath: path)
            let k = TierKey(uniqueKey("pk"))
            XCTAssertNoThrow(try put(tier, k, Entry(value: [1, 2, 3]))?.get(), path)
            XCTAssertEqual(try get(tier, k)?.get(), Entry(value: [1, 2, 3]), path)
            XCTAssertNoThrow(try del(tier, k)?.get(), path)
            let r: Result<String, TierError>? = runOp(loop) { tier.check($0) }
            XCTAssertNoThrow(try r?.get(), path)
        }
        XCTAssertThrowsError(try makeTier(pkPath: "/a/b", create: false))
    }

    func testThrottleStormIsRetriedWithServerDelay() throws {
        let tier = try makeTier()
        let k = TierKey(uniqueKey("throttle"))
        XCTAssertNoThrow(try put(tier, k, Entry(value: [7]))?.get())
        emu.addFault("cosmos", ["kind": "throttle", "op": "ReadDocument", "count": 4, "retry_after_ms": 120])
        let started = monotonicMillis()
        XCTAssertEqual(try get(tier, k)?.get(), Entry(value: [7]))
        XCTAssertGreaterThanOrEqual(monotonicMillis() - started, 480)
        XCTAssertEqual(tier.counters.snapshot.throttled, 4)
        XCTAssertEqual(tier.counters.snapshot.failures, 0)
    }

    func testServiceUnavailableThenSuccess() throws {
        let tier = try makeTier()
        let k = TierKey(uniqueKey("503"))
        emu.addFault("cosmos", ["kind": "status", "status": 503, "op": "UpsertDocument", "count": 1])
        emu.addFault("cosmos", ["kind": "status", "status": 449, "op": "UpsertDocument", "count": 1])
        XCTAssertNoThrow(try put(tier, k, Entry(value: [9]))?.get())
        XCTAssertEqual(try get(tier, k)?.get(), Entry(value: [9]))
        XCTAssertGreaterThanOrEqual(tier.counters.snapshot.retries, 2)
    }

    func testConnectionResetIsRetried() throws {
        let tier = try makeTier()
        let k = TierKey(uniqueKey("reset"))
        emu.addFault("cosmos", ["kind": "reset", "op": "ReadDocument", "count": 1])
        XCTAssertEqual(try get(tier, k)?.get(), .some(nil))
        // curl itself reconnects when a reused connection dies; otherwise our retry does.
        let fired = (emu.control("cosmos", "GET", "/__faults").1 as? [String: Any])?["fired"] as? [String: Int]
        XCTAssertEqual(fired?["reset"], 1)
        XCTAssertEqual(tier.counters.snapshot.failures, 0)
    }

    func testHungServerHitsDeadlineAndLoopKeepsTicking() throws {
        var policy = RetryPolicy()
        policy.deadlineMillis = 1200
        let tier = try makeTier(retry: policy)
        emu.addFault("cosmos", ["kind": "hang", "op": "ReadDocument", "count": -1, "ms": 5000])
        defer { emu.clearFaults() }
        var ticks = 0
        let ticker = Reactor.Timer(loop: loop, millis: 20, repeating: true) { ticks += 1 }
        let started = monotonicMillis()
        let r = get(tier, TierKey(uniqueKey("hang")))
        ticker.cancel()
        let elapsed = monotonicMillis() - started
        guard case .failure(.unavailable(let msg))? = r else { return XCTFail("\(String(describing: r))") }
        XCTAssertTrue(msg.contains("timed out"), msg)
        XCTAssertLessThan(elapsed, 3000)
        XCTAssertGreaterThan(ticks, Int(elapsed) / 20 / 2, "loop starved")
        XCTAssertEqual(tier.counters.snapshot.failures, 1)
    }

    func testPersistentFailureSurfaces() throws {
        var policy = RetryPolicy()
        policy.maxAttempts = 3
        policy.baseDelayMillis = 10
        let tier = try makeTier(retry: policy)
        emu.addFault("cosmos", ["kind": "status", "status": 500, "op": "UpsertDocument", "count": -1])
        defer { emu.clearFaults() }
        guard case .failure(.unavailable(let msg))? = put(tier, TierKey(uniqueKey("p")), Entry(value: [1])) else {
            return XCTFail("expected unavailable")
        }
        XCTAssertTrue(msg.contains("HTTP 500") && msg.contains("3 attempts"), msg)
    }

    func testCheckReportsOkWrongKeyMissingContainerAndNoServer() throws {
        let tier = try makeTier()
        let ok: Result<String, TierError>? = runOp(loop) { tier.check($0) }
        XCTAssertTrue((try ok?.get())?.hasPrefix("ok") ?? false, "\(String(describing: ok))")

        let wrong = try makeTier(key: Base64.encode(Array("not the key".utf8)), create: false)
        let r1: Result<String, TierError>? = runOp(loop) { wrong.check($0) }
        guard case .failure(.unauthorized)? = r1 else { return XCTFail("\(String(describing: r1))") }
        guard case .failure(.unauthorized)? = get(wrong, TierKey("x")) else { return XCTFail("get with wrong key") }

        let missing = try makeTier(container: "nope-\(UInt32.random(in: 0...UInt32.max))", create: false)
        let r2: Result<String, TierError>? = runOp(loop) { missing.check($0) }
        guard case .failure(.failed(let m))? = r2, m.contains("not found") else { return XCTFail("\(String(describing: r2))") }

        let cfg = CosmosTierConfig(endpoint: "http://127.0.0.1:1")
        let down = try CosmosTier(loop: loop, config: cfg, auth: .sharedKey(SecretSetting(emu.cosmosKey)), http: HTTPClient(loop: loop))
        let r3: Result<String, TierError>? = runOp(loop) { down.check($0) }
        guard case .failure(.unavailable(let m3))? = r3, m3.contains("connect") else { return XCTFail("\(String(describing: r3))") }
    }

    func purge(_ tier: Tier, db: Int?) -> Result<Int, TierError>? { runOp(loop) { tier.purge(db: db, $0) } }

    func testPurgeTakesItemsOfOtherWritersByTheirDbAndPartitionKey() throws {
        // A container of its own: purges see every item in it.
        let container = "own-\(UInt32.random(in: 0...UInt32.max))"
        try emu.createCosmosContainer(container, partitionKeyPath: "/pk")
        var cfg = CosmosTierConfig(endpoint: emu.cosmos)
        cfg.container = container
        cfg.partitionKeyPath = "/pk"
        cfg.feedPageSize = 2
        let tier = try CosmosTier(loop: loop, config: cfg, auth: .sharedKey(SecretSetting(emu.cosmosKey)), http: HTTPClient(loop: loop))
        XCTAssertNoThrow(try put(tier, TierKey(db: 1, "ours-1"), Entry(value: [1]))?.get())
        XCTAssertNoThrow(try put(tier, TierKey(db: 0, "ours-0"), Entry(value: [0]))?.get())
        // Seed items (no tp_db: db 0), one in a partition other than its id, one in the undefined
        // partition (no pk property), and tp_db written as a JSON number or as junk.
        let (status, _, err) = runPython("""
        import os
        from azure.cosmos import CosmosClient
        c = CosmosClient(os.environ["COSMOS_ENDPOINT"], credential=os.environ["COSMOS_KEY"])
        cont = c.get_database_client("memory").get_container_client("\(container)")
        cont.upsert_item({"id": "seed", "pk": "seed", "value": "s"})
        cont.upsert_item({"id": "grouped", "pk": "group-7", "value": "g"})
        cont.upsert_item({"id": "loose", "value": "no pk property"})
        cont.upsert_item({"id": "numeric", "pk": "numeric", "value": "n", "tp_db": 3})
        cont.upsert_item({"id": "junk", "pk": "junk", "value": "j", "tp_db": "three"})
        """, env: pythonEnv)
        XCTAssertEqual(status, 0, err)
        XCTAssertEqual(try purge(tier, db: 3)?.get(), 1)
        XCTAssertEqual(try purge(tier, db: 1)?.get(), 1)
        XCTAssertEqual(try get(tier, TierKey(db: 1, "ours-1"))?.get(), .some(nil))
        XCTAssertEqual(try purge(tier, db: 0)?.get(), 4, "ours-0, seed, grouped, loose")
        XCTAssertEqual(try get(tier, TierKey("seed"))?.get(), .some(nil))
        XCTAssertEqual(try purge(tier, db: nil)?.get(), 1, "only the item with an unreadable tp_db is left")
        XCTAssertEqual(try purge(tier, db: nil)?.get(), 0)
    }

    func testPurgeRidesOutThrottlingAndReportsPersistentFailure() throws {
        let container = "own-\(UInt32.random(in: 0...UInt32.max))"
        try emu.createCosmosContainer(container)
        var cfg = CosmosTierConfig(endpoint: emu.cosmos)
        cfg.container = container
        cfg.feedPageSize = 3
        cfg.retry.maxAttempts = 3
        cfg.retry.baseDelayMillis = 10
        let tier = try CosmosTier(loop: loop, config: cfg, auth: .sharedKey(SecretSetting(emu.cosmosKey)), http: HTTPClient(loop: loop))
        let keys = (0..<10).map { TierKey(db: 1, "k\($0)") }
        for k in keys { XCTAssertNoThrow(try put(tier, k, Entry(value: [1]))?.get()) }
        defer { emu.clearFaults() }
        emu.addFault("cosmos", ["kind": "throttle", "op": "ReadFeedDocuments", "path": container, "count": 2, "retry_after_ms": 20])
        emu.addFault("cosmos", ["kind": "throttle", "op": "DeleteDocument", "path": container, "count": 3, "retry_after_ms": 20])
        XCTAssertEqual(try purge(tier, db: 1)?.get(), 10)
        XCTAssertEqual(tier.counters.snapshot.throttled, 5)

        for k in keys { XCTAssertNoThrow(try put(tier, k, Entry(value: [1]))?.get()) }
        emu.addFault("cosmos", ["kind": "status", "status": 500, "op": "DeleteDocument", "path": container, "count": -1])
        guard case .failure(.unavailable(let msg))? = purge(tier, db: 1) else { return XCTFail("expected unavailable") }
        XCTAssertTrue(msg.contains("cosmos delete") && msg.contains("HTTP 500"), msg)
        emu.clearFaults()
        XCTAssertEqual(try purge(tier, db: 1)?.get(), 10, "a failed purge deleted nothing it could not")
    }

    func testEntraIDTokenFromManagedIdentity() throws {
        let http = HTTPClient(loop: loop)
        var env = IdentityEnvironment()
        env.imdsEndpoint = emu["imds"]
        let credential = env.makeCredential(http: http)
        var cfg = CosmosTierConfig(endpoint: emu.cosmos)
        cfg.tokenScope = "https://cosmos.azure.com/.default"
        let tier = try CosmosTier(loop: loop, config: cfg, auth: .entraID(credential), http: http)
        _ = try makeTier()  // creates the container with the key
        let k = TierKey(uniqueKey("aad"))
        XCTAssertNoThrow(try put(tier, k, Entry(value: [4, 2]))?.get())
        XCTAssertEqual(try get(tier, k)?.get(), Entry(value: [4, 2]))
        XCTAssertEqual((credential as? CachingTokenCredential)?.fetches, 1, "token cached")
    }
}

extension Array where Element == UInt8 {
    var string: String { String(decoding: self, as: UTF8.self) }
}
