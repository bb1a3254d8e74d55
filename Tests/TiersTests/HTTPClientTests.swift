import Foundation
import Reactor
import XCTest
@testable import Tiers

final class HTTPClientTests: XCTestCase {
    static var fixture: HTTPFixture?
    var base: String { Self.fixture!.base }

    override class func setUp() {
        fixture = try? HTTPFixture()
    }

    override class func tearDown() {
        fixture?.stop()
        fixture = nil
    }

    override func setUpWithError() throws {
        try XCTSkipIf(Self.fixture == nil, "python3 HTTP fixture did not start")
    }

    func uniqueKey() -> String { "k\(UInt64.random(in: 0...UInt64.max))" }

    func testEchoCarriesMethodHeadersAndBody() throws {
        let loop = EventLoop()
        let client = HTTPClient(loop: loop)
        var got: Result<HTTPResponse, HTTPError>?
        let body: [UInt8] = Array(0...255) + Array("tail".utf8)
        runLoop(loop) { finish in
            client.send(HTTPRequest(method: "PUT", url: base + "/echo", headers: [("x-ms-test", "v1"), ("Empty", "")],
                                    body: body)) { got = $0; finish() }
        }
        let r = try XCTUnwrap(try got?.get())
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.header("Content-Type"), "application/json")
        let json = try JSONSerialization.jsonObject(with: Data(r.body)) as! [String: Any]
        XCTAssertEqual(json["method"] as? String, "PUT")
        XCTAssertEqual(json["body_len"] as? Int, body.count)
        XCTAssertEqual(Array((json["body"] as! String).unicodeScalars.map { UInt8($0.value) }), body)
        let headers = json["headers"] as! [String: String]
        XCTAssertEqual(headers["x-ms-test"], "v1")
        XCTAssertEqual(headers["empty"], "")
        XCTAssertNil(headers["content-type"], "curl must not add a form content type")
        XCTAssertNil(headers["expect"])
    }

    func testMethodsWithoutBody() throws {
        let loop = EventLoop()
        let client = HTTPClient(loop: loop)
        var results = [String: HTTPResponse]()
        runLoop(loop) { finish in
            var left = 4
            for m in ["GET", "DELETE", "HEAD", "PUT"] {
                client.send(HTTPRequest(method: m, url: base + "/echo")) { r in
                    results[m] = try? r.get()
                    left -= 1
                    if left == 0 { finish() }
                }
            }
        }
        for m in ["GET", "DELETE", "PUT"] {
            let json = try JSONSerialization.jsonObject(with: Data(results[m]!.body)) as! [String: Any]
            XCTAssertEqual(json["method"] as? String, m)
        }
        XCTAssertEqual(results["HEAD"]?.status, 200)
        XCTAssertEqual(results["HEAD"]?.body, [])
        let put = try JSONSerialization.jsonObject(with: Data(results["PUT"]!.body)) as! [String: Any]
        XCTAssertEqual((put["headers"] as! [String: String])["content-length"], "0")
    }

    func testRequestsOverlapOnOneLoop() throws {
        let loop = EventLoop()
        let client = HTTPClient(loop: loop)
        var ok = 0
        let started = monotonicMillis()
        let n = 40
        let finished = runLoop(loop) { finish in
            for _ in 0..<n {
                client.send(HTTPRequest(method: "GET", url: base + "/delay?ms=200")) { r in
                    if (try? r.get())?.status == 200 { ok += 1 }
                    if ok == n { finish() }
                }
            }
        }
        let elapsed = monotonicMillis() - started
        XCTAssertTrue(finished)
        XCTAssertEqual(ok, n)
        XCTAssertGreaterThanOrEqual(client.peakInFlight, n)
        XCTAssertLessThan(elapsed, Int64(n * 200 / 4), "requests did not overlap: \(elapsed) ms")
    }

    func testConnectionRefusedIsConnectError() throws {
        let loop = EventLoop()
        let client = HTTPClient(loop: loop)
        var got: Result<HTTPResponse, HTTPError>?
        runLoop(loop) { finish in
            client.send(HTTPRequest(method: "GET", url: "http://127.0.0.1:1/")) { got = $0; finish() }
        }
        guard case .failure(.connect)? = got else { return XCTFail("expected connect error, got \(String(describing: got))") }
    }

    func testTimeoutOnHungServer() throws {
        let loop = EventLoop()
        let client = HTTPClient(loop: loop)
        var got: Result<HTTPResponse, HTTPError>?
        let started = monotonicMillis()
        runLoop(loop) { finish in
            client.send(HTTPRequest(method: "GET", url: base + "/hang", timeoutMillis: 300)) { got = $0; finish() }
        }
        guard case .failure(.timeout)? = got else { return XCTFail("expected timeout, got \(String(describing: got))") }
        XCTAssertLessThan(monotonicMillis() - started, 3000)
    }

    func testRetryHonoursServerDelayOn429() throws {
        let loop = EventLoop()
        let retrying = RetryingClient(http: HTTPClient(loop: loop))
        let key = uniqueKey()
        var got: Result<HTTPResponse, TierError>?
        let started = monotonicMillis()
        runLoop(loop) { finish in
            retrying.perform("get", build: { $0(.success(HTTPRequest(
                method: "GET", url: self.base + "/fail?key=\(key)&status=429&times=3&retry_after_ms=150")))
            }) { got = $0; finish() }
        }
        let elapsed = monotonicMillis() - started
        XCTAssertEqual(try got?.get().status, 200)
        XCTAssertGreaterThanOrEqual(elapsed, 450, "three 150 ms waits")
        let s = retrying.counters.snapshot
        XCTAssertEqual(s.requests, 4)
        XCTAssertEqual(s.retries, 3)
        XCTAssertEqual(s.throttled, 3)
        XCTAssertEqual(s.failures, 0)
    }

    func testRetryAfterSecondsHeader() throws {
        let loop = EventLoop()
        let retrying = RetryingClient(http: HTTPClient(loop: loop))
        let key = uniqueKey()
        var got: Result<HTTPResponse, TierError>?
        let started = monotonicMillis()
        runLoop(loop) { finish in
            retrying.perform("get", build: { $0(.success(HTTPRequest(
                method: "GET", url: self.base + "/fail?key=\(key)&status=503&times=1&retry_after=1")))
            }) { got = $0; finish() }
        }
        XCTAssertEqual(try got?.get().status, 200)
        XCTAssertGreaterThanOrEqual(monotonicMillis() - started, 1000)
    }

    func testPersistentFailureSurfacesWhileLoopKeepsTicking() throws {
        let loop = EventLoop()
        var policy = RetryPolicy()
        policy.maxAttempts = 4
        policy.baseDelayMillis = 20
        let retrying = RetryingClient(http: HTTPClient(loop: loop), policy: policy)
        let key = uniqueKey()
        var got: Result<HTTPResponse, TierError>?
        var ticks = 0
        let ticker = Reactor.Timer(loop: loop, millis: 10, repeating: true) { ticks += 1 }
        let started = monotonicMillis()
        runLoop(loop) { finish in
            retrying.perform("put thing", build: { $0(.success(HTTPRequest(
                method: "PUT", url: self.base + "/fail?key=\(key)&status=500&times=100")))
            }) { got = $0; finish() }
        }
        ticker.cancel()
        guard case .failure(.unavailable(let msg))? = got else { return XCTFail("\(String(describing: got))") }
        XCTAssertTrue(msg.contains("HTTP 500") && msg.contains("4 attempts"), msg)
        XCTAssertEqual(retrying.counters.snapshot.failures, 1)
        XCTAssertEqual(retrying.counters.snapshot.retries, 3)
        let elapsed = monotonicMillis() - started
        XCTAssertGreaterThan(ticks, Int(elapsed / 10) / 3, "loop starved: \(ticks) ticks in \(elapsed) ms")
    }

    func testHungServerHitsTotalDeadlineWithoutBlockingLoop() throws {
        let loop = EventLoop()
        var policy = RetryPolicy()
        policy.deadlineMillis = 1000
        let http = HTTPClient(loop: loop)
        let retrying = RetryingClient(http: http, policy: policy)
        var got: Result<HTTPResponse, TierError>?
        var ticks = 0
        let ticker = Reactor.Timer(loop: loop, millis: 20, repeating: true) { ticks += 1 }
        let started = monotonicMillis()
        runLoop(loop) { finish in
            retrying.perform("get hung", build: { $0(.success(HTTPRequest(
                method: "GET", url: self.base + "/hang", timeoutMillis: 400)))
            }) { got = $0; finish() }
        }
        ticker.cancel()
        let elapsed = monotonicMillis() - started
        guard case .failure(.unavailable(let msg))? = got else { return XCTFail("\(String(describing: got))") }
        XCTAssertTrue(msg.contains("timed out"), msg)
        XCTAssertGreaterThanOrEqual(elapsed, 900)
        XCTAssertLessThan(elapsed, 2500)
        XCTAssertGreaterThan(ticks, 20, "loop blocked while waiting")
    }

    func testNonRetryableStatusIsReturned() throws {
        let loop = EventLoop()
        let retrying = RetryingClient(http: HTTPClient(loop: loop))
        var got: Result<HTTPResponse, TierError>?
        runLoop(loop) { finish in
            retrying.perform("get", build: { $0(.success(HTTPRequest(method: "GET", url: self.base + "/nothing"))) }) {
                got = $0; finish()
            }
        }
        XCTAssertEqual(try got?.get().status, 404)
        XCTAssertEqual(retrying.counters.snapshot.requests, 1)
    }

    func testNonIdempotentWriteDoesNotRetry503() throws {
        let loop = EventLoop()
        let retrying = RetryingClient(http: HTTPClient(loop: loop))
        let key = uniqueKey()
        var got: Result<HTTPResponse, TierError>?
        runLoop(loop) { finish in
            retrying.perform("create", idempotent: false, build: { $0(.success(HTTPRequest(
                method: "POST", url: self.base + "/fail?key=\(key)&status=503&times=1")))
            }) { got = $0; finish() }
        }
        guard case .failure(.unavailable(let msg))? = got else { return XCTFail("\(String(describing: got))") }
        XCTAssertTrue(msg.contains("outcome unknown"), msg)
    }

    func testBackoffGrowsWithJitter() {
        var p = RetryPolicy()
        p.baseDelayMillis = 100
        p.maxDelayMillis = 1000
        for _ in 0..<50 {
            XCTAssert((50...100).contains(p.delayMillis(retry: 1, serverHintMillis: nil)))
            XCTAssert((200...400).contains(p.delayMillis(retry: 3, serverHintMillis: nil)))
            XCTAssert((500...1000).contains(p.delayMillis(retry: 10, serverHintMillis: nil)))
        }
        XCTAssertEqual(p.delayMillis(retry: 1, serverHintMillis: 1234), 1234)
    }
}

/// TLS against the emulators' self-signed certificate: verified with the configured CA bundle,
/// refused without it.
final class HTTPClientTLSTests: XCTestCase {
    func testVerificationUsesConfiguredCABundle() throws {
        let emu = try Emulators(tls: true)
        defer { emu.stop() }
        let ca = emu["ca_cert"]
        try XCTSkipIf(ca.isEmpty, "emulators report no CA certificate")
        XCTAssertTrue(emu.cosmos.hasPrefix("https://"))
        var trusted = HTTPClientOptions()
        trusted.caBundlePath = ca
        let ok = syncRequest(HTTPRequest(method: "GET", url: emu.cosmos + "/__health"), options: trusted)
        XCTAssertEqual(try ok.get().status, 200)
        let refused = syncRequest(HTTPRequest(method: "GET", url: emu.cosmos + "/__health"))
        guard case .failure(.connect(let m)) = refused else { return XCTFail("self-signed certificate accepted: \(refused)") }
        XCTAssertTrue(m.lowercased().contains("certificate"), m)

        // A Cosmos tier over TLS with the bundle works end to end.
        let loop = EventLoop()
        let tier = try CosmosTier(loop: loop, config: CosmosTierConfig(endpoint: emu.cosmos),
                                  auth: .sharedKey(SecretSetting(emu.cosmosKey)), http: HTTPClient(loop: loop, options: trusted))
        let made: Result<Void, TierError>? = runOp(loop) { tier.createDatabaseAndContainer($0) }
        XCTAssertNoThrow(try made?.get())
        let put: Result<Void, TierError>? = runOp(loop) { tier.put(TierKey("tls"), Entry(value: [1]), $0) }
        XCTAssertNoThrow(try put?.get())
        let got: Result<Entry?, TierError>? = runOp(loop) { tier.get(TierKey("tls"), $0) }
        XCTAssertEqual(try got?.get(), Entry(value: [1]))
    }
}
