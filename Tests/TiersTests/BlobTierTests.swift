import Foundation
import Reactor
import XCTest
@testable import Tiers

final class BlobTierTests: XCTestCase {
    var emu: Emulators!
    var loop: EventLoop!
    var http: HTTPClient!

    override func setUpWithError() throws {
        emu = try Emulators.sharedPrepared()
        emu.clearFaults()
        loop = EventLoop()
        http = HTTPClient(loop: loop)
    }

    func makeTier(_ tweak: (inout BlobTierConfig) -> Void = { _ in }, auth: AzureAuth? = nil) -> BlobTier {
        var cfg = BlobTierConfig(accountURL: emu.blob)
        tweak(&cfg)
        return BlobTier(loop: loop, config: cfg, auth: auth ?? .sharedKey(SecretSetting(emu.blobKey)), http: http)
    }

    func uniqueKey(_ p: String) -> String { "\(p)-\(UInt32.random(in: 0...UInt32.max))" }
    func get(_ t: Tier, _ k: TierKey) -> Result<Entry?, TierError>? { runOp(loop) { t.get(k, $0) } }
    func put(_ t: Tier, _ k: TierKey, _ e: Entry) -> Result<Void, TierError>? { runOp(loop) { t.put(k, e, $0) } }
    func check(_ t: Tier) -> Result<String, TierError>? { runOp(loop) { t.check($0) } }

    var pyEnv: [String: String] { ["CS": emu["blob_connection_string"]] }
    let pyPrelude = """
    import os, sys, json, gzip
    from azure.storage.blob import BlobServiceClient, ContentSettings
    svc = BlobServiceClient.from_connection_string(os.environ["CS"])
    cont = svc.get_container_client("memory")

    """

    func testSeedBlobsWrittenByPythonSDKReadHere() throws {
        let tier = makeTier()
        let k = uniqueKey("seed")
        let (st, _, err) = runPython(pyPrelude + """
        cont.upload_blob("\(k)", "from python ✓".encode(), overwrite=True, content_settings=ContentSettings(content_type="application/octet-stream"))
        cont.upload_blob("\(k)-gz", gzip.compress(b"z" * 300000), overwrite=True,
                         content_settings=ContentSettings(content_encoding="gzip"))
        """, env: pyEnv)
        XCTAssertEqual(st, 0, err)
        XCTAssertEqual(try get(tier, TierKey(k))?.get(), Entry(value: Array("from python ✓".utf8)))
        XCTAssertEqual(try get(tier, TierKey(k + "-gz"))?.get()?.value, [UInt8](repeating: UInt8(ascii: "z"), count: 300000))
    }

    func testBlobsWrittenHereReadByPythonSDK() throws {
        let tier = makeTier { $0.compressThreshold = 1 << 20; $0.singlePutLimit = 1 << 20; $0.blockSize = 300_000 }
        let small = uniqueKey("ours")
        let exp = wallClockMillis() + 3_600_000
        XCTAssertNoThrow(try put(tier, TierKey(small), Entry(value: Array("from swift".utf8), expiresAtMillis: exp))?.get())
        let big = uniqueKey("ours-big")
        // Incompressible-ish so the gzip body still needs blocks.
        var rng = SystemRandomNumberGenerator()
        let bigValue = (0..<(3 << 20)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        emu.resetStats()
        XCTAssertNoThrow(try put(tier, TierKey(big), Entry(value: bigValue))?.get())
        let ops = emu.ops("blob")
        XCTAssertGreaterThanOrEqual(ops["PutBlock"] ?? 0, 10)
        XCTAssertEqual(ops["PutBlockList"], 1)
        XCTAssertEqual(try get(tier, TierKey(big))?.get()?.value, bigValue)
        let (st, out, err) = runPython(pyPrelude + """
        a = cont.get_blob_client("\(small)")
        p = a.get_blob_properties()
        b = cont.get_blob_client("\(big)")
        bp = b.get_blob_properties()
        raw = b.download_blob(decompress=False).readall()
        print(json.dumps({"small": a.download_blob().readall().decode(), "meta": p.metadata,
                          "enc": bp.content_settings.content_encoding, "bigmeta": bp.metadata,
                          "biglen": len(gzip.decompress(raw)), "type": p.content_settings.content_type}))
        """, env: pyEnv)
        XCTAssertEqual(st, 0, err)
        let doc = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any]
        XCTAssertEqual(doc["small"] as? String, "from swift")
        XCTAssertEqual((doc["meta"] as? [String: String])?["tp_exp"], String(exp))
        XCTAssertEqual(doc["type"] as? String, "application/octet-stream")
        XCTAssertEqual(doc["enc"] as? String, "gzip")
        XCTAssertEqual((doc["bigmeta"] as? [String: String])?["tp_enc"], "gzip")
        XCTAssertEqual(doc["biglen"] as? Int, bigValue.count)
    }

    func testExpiredBlobReadsAbsentAndIsDeleted() throws {
        let tier = makeTier()
        let k = TierKey(uniqueKey("exp"))
        XCTAssertNoThrow(try put(tier, k, Entry(value: [1], expiresAtMillis: wallClockMillis() + 300))?.get())
        usleep(400_000)
        emu.resetStats()
        XCTAssertEqual(try get(tier, k)?.get(), .some(nil))
        // The delete runs after the answer: give it a moment on the loop.
        runLoop(loop, timeoutMillis: 300) { _ in }
        XCTAssertEqual(emu.ops("blob")["DeleteBlob"], 1)
    }

    func testServerBusyThenSuccessAndThrottleHint() throws {
        let tier = makeTier()
        let k = TierKey(uniqueKey("busy"))
        emu.addFault("blob", ["kind": "status", "status": 503, "op": "PutBlob", "count": 2])
        XCTAssertNoThrow(try put(tier, k, Entry(value: [5]))?.get())
        emu.addFault("blob", ["kind": "throttle", "op": "GetBlob", "count": 1, "retry_after_ms": 1000])
        let started = monotonicMillis()
        XCTAssertEqual(try get(tier, k)?.get(), Entry(value: [5]))
        XCTAssertEqual(tier.counters.snapshot.retries, 3)
        XCTAssertGreaterThanOrEqual(monotonicMillis() - started, 1000, "Retry-After honoured")
    }

    func testPurgeTakesBlobsOfOtherWritersByTheirDbMetadata() throws {
        // A container of its own: purges see every blob in it.
        let container = "own-\(UInt32.random(in: 0...UInt32.max))"
        try emu.createBlobContainer(container)
        let tier = makeTier { $0.container = container; $0.listPageSize = 2 }
        XCTAssertNoThrow(try put(tier, TierKey(db: 1, "ours-1"), Entry(value: [1]))?.get())
        XCTAssertNoThrow(try put(tier, TierKey(db: 0, "ours-0"), Entry(value: [0]))?.get())
        // Seed blobs (no metadata: db 0, one whose name XML must escape), tp_db set by another
        // writer, and a tp_db that is not a number.
        let (st, _, err) = runPython(pyPrelude + """
        own = svc.get_container_client("\(container)")
        own.upload_blob("seed", b"s")
        own.upload_blob("a&b<c>'\\"d", b"x")
        own.upload_blob("tagged", b"t", metadata={"tp_db": "2"})
        own.upload_blob("junk", b"j", metadata={"tp_db": "two"})
        """, env: pyEnv)
        XCTAssertEqual(st, 0, err)
        func purge(_ db: Int?) -> Result<Int, TierError>? { runOp(loop) { tier.purge(db: db, $0) } }
        XCTAssertEqual(try purge(2)?.get(), 1)
        XCTAssertEqual(try purge(1)?.get(), 1)
        XCTAssertEqual(try get(tier, TierKey(db: 1, "ours-1"))?.get(), .some(nil))
        XCTAssertEqual(try purge(0)?.get(), 3, "ours-0, seed and the escaped name")
        XCTAssertEqual(try get(tier, TierKey("seed"))?.get(), .some(nil))
        XCTAssertEqual(try purge(nil)?.get(), 1, "only the blob with an unreadable tp_db is left")
        XCTAssertEqual(try purge(nil)?.get(), 0)
    }

    func testCheckOkWrongKeyMissingContainer() throws {
        XCTAssertTrue((try check(makeTier())?.get())?.hasPrefix("ok") ?? false)
        let wrong = makeTier(auth: .sharedKey(SecretSetting(Base64.encode(Array("bad key".utf8)))))
        guard case .failure(.unauthorized(let m))? = check(wrong) else { return XCTFail("wrong key accepted") }
        XCTAssertTrue(m.contains("403"), m)
        let missing = makeTier { $0.container = "nope\(UInt32.random(in: 0...99999))" }
        guard case .failure(.failed(let m2))? = check(missing), m2.contains("not found") else { return XCTFail("missing container") }
    }

    func testSASAndBearerAuth() throws {
        let (st, out, err) = runPython(pyPrelude + """
        from datetime import datetime, timedelta, timezone
        from azure.storage.blob import generate_container_sas, ContainerSasPermissions
        print(generate_container_sas(svc.account_name, "memory", account_key=svc.credential.account_key,
              permission=ContainerSasPermissions(read=True, write=True, delete=True, create=True),
              expiry=datetime.now(timezone.utc) + timedelta(hours=1)))
        """, env: pyEnv)
        XCTAssertEqual(st, 0, err)
        let sasTier = makeTier(auth: .sas(SecretSetting(out.trimmingCharacters(in: .whitespacesAndNewlines))))
        let k = TierKey(uniqueKey("sas"))
        XCTAssertNoThrow(try put(sasTier, k, Entry(value: [1, 2]))?.get())
        XCTAssertEqual(try get(sasTier, k)?.get(), Entry(value: [1, 2]))

        var env = IdentityEnvironment()
        env.authorityHost = emu["authority_host"]
        env.tenantId = emu["tenant_id"]
        env.clientId = emu["client_id"]
        env.clientSecret = Secret(emu["client_secret"])
        let bearerTier = makeTier(auth: .entraID(env.makeCredential(http: http)))
        XCTAssertEqual(try get(bearerTier, k)?.get(), Entry(value: [1, 2]))
        XCTAssertTrue((try check(bearerTier)?.get())?.contains("Entra ID") ?? false)
    }
}
