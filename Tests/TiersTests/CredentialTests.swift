import Foundation
import Reactor
import XCTest
@testable import Tiers

/// Entra ID credentials and Key Vault references against the emulator's token server.
final class CredentialTests: XCTestCase {
    var emu: Emulators!
    var loop: EventLoop!
    var http: HTTPClient!

    override func setUpWithError() throws {
        emu = try Emulators.sharedPrepared()
        emu.clearFaults()
        emu.configureIdentity(["token_lifetime_s": 3600])
        loop = EventLoop()
        http = HTTPClient(loop: loop)
    }

    func token(_ c: TokenCredential, _ scope: String = "https://storage.azure.com/.default") -> Result<AccessToken, TierError>? {
        runOp(loop) { c.token(for: scope, $0) }
    }

    /// The JWT's payload claims.
    func claims(_ t: AccessToken) -> [String: Any] {
        let parts = t.token.reveal.split(separator: ".")
        guard parts.count == 3, let bytes = Base64.decode(String(parts[1])) else { return [:] }
        return (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] ?? [:]
    }

    func testEachSourceFromEnvironment() throws {
        let base: [String: String] = ["TIERPROXY_IMDS_ENDPOINT": emu["imds"], "AZURE_AUTHORITY_HOST": emu["authority_host"]]
        let tokenFile = NSTemporaryDirectory() + "fed-\(getpid()).jwt"
        // Any three-part JWT-shaped assertion is accepted unless the emulator is told one.
        let assertion = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ0ZXN0In0.c2ln"
        try (assertion + "\n").write(toFile: tokenFile, atomically: true, encoding: .utf8)
        emu.configureIdentity(["federated_token": assertion])
        let cases: [(String, [String: String])] = [
            ("managed identity (IMDS)", base),
            ("managed identity (App Service)", base.merging(["IDENTITY_ENDPOINT": emu["identity_endpoint"],
                                                              "IDENTITY_HEADER": emu["identity_header"]]) { $1 }),
            ("client secret", base.merging(["AZURE_TENANT_ID": emu["tenant_id"], "AZURE_CLIENT_ID": emu["client_id"],
                                            "AZURE_CLIENT_SECRET": emu["client_secret"]]) { $1 }),
            ("workload identity", base.merging(["AZURE_TENANT_ID": emu["tenant_id"], "AZURE_CLIENT_ID": emu["client_id"],
                                                "AZURE_FEDERATED_TOKEN_FILE": tokenFile]) { $1 }),
        ]
        for (kind, env) in cases {
            let c = IdentityEnvironment.from(env).makeCredential(http: http)
            XCTAssertTrue(c.kind.hasPrefix(kind), "\(c.kind) for \(kind)")
            let t = try XCTUnwrap(try token(c)?.get(), kind)
            XCTAssertEqual(claims(t)["aud"] as? String, "https://storage.azure.com", kind)
            XCTAssertGreaterThan(t.expiresOn, Int64(Date().timeIntervalSince1970) + 3000, kind)
        }
    }

    func testWrongSecretIsUnauthorizedWithReason() throws {
        var env = IdentityEnvironment()
        env.authorityHost = emu["authority_host"]
        env.tenantId = emu["tenant_id"]
        env.clientId = emu["client_id"]
        env.clientSecret = Secret("wrong-secret")
        guard case .failure(.unauthorized(let m))? = token(env.makeCredential(http: http)) else { return XCTFail("accepted") }
        XCTAssertTrue(m.contains("AADSTS"), m)
        XCTAssertFalse(m.contains("wrong-secret"), "secret leaked into an error")
    }

    func testTokensAreCachedAndRefreshedAheadOfExpiry() throws {
        var now: Int64 = Int64(Date().timeIntervalSince1970)
        var env = IdentityEnvironment()
        env.imdsEndpoint = emu["imds"]
        let fetcher = ManagedIdentityFetcher(client: RetryingClient(http: http), flavor: .imds(env.imdsEndpoint), clientId: nil)
        let c = CachingTokenCredential(fetcher, clock: { now })
        let first = try XCTUnwrap(try token(c)?.get())
        _ = try token(c)?.get()
        XCTAssertEqual(c.fetches, 1)
        // Concurrent misses share one fetch.
        let other = "https://vault.azure.net/.default"
        let both: [Result<AccessToken, TierError>]? = runOp(loop) { done in
            fanOut(2, { _, cb in c.token(for: other, cb) }, done)
        }
        XCTAssertEqual(both?.count, 2)
        XCTAssertEqual(c.fetches, 2)
        // Within the refresh margin: the cached token is served and a refresh runs behind it.
        now = first.expiresOn - 100
        XCTAssertEqual(try token(c)?.get().token, first.token)
        runLoop(loop, timeoutMillis: 500) { finish in
            Reactor.Timer(loop: loop, millis: 200) { finish() }.arm(200)
        }
        XCTAssertEqual(c.fetches, 3)
        // Expired: fetched before answering; invalidated: fetched again.
        now = first.expiresOn + 10_000
        _ = try token(c)?.get()
        c.invalidate(scope: "https://storage.azure.com/.default")
        _ = try token(c)?.get()
        XCTAssertGreaterThanOrEqual(c.fetches, 5)
    }

    func testChainFallsThroughToWorkingSource() throws {
        let broken = CachingTokenCredential(ManagedIdentityFetcher(
            client: RetryingClient(http: http, policy: .none), flavor: .imds("http://127.0.0.1:1/token"), clientId: nil))
        let good = CachingTokenCredential(ManagedIdentityFetcher(
            client: RetryingClient(http: http), flavor: .imds(emu["imds"]), clientId: nil))
        let chain = ChainedTokenCredential([broken, good])
        XCTAssertNoThrow(try token(chain)?.get())
        XCTAssertEqual(chain.kind, "managed identity (IMDS)")
        let none = ChainedTokenCredential([broken])
        guard case .failure(.unauthorized(let m))? = token(none) else { return XCTFail() }
        XCTAssertTrue(m.contains("connect"), m)
    }

    func testKeyVaultReferencesResolveAndReload() throws {
        let name = "cosmos-key-\(UInt32.random(in: 0...99999))"
        emu.setSecret(name, "first-value")
        var env = IdentityEnvironment()
        env.imdsEndpoint = emu["imds"]
        let resolver = KeyVaultResolver(http: http, credential: env.makeCredential(http: http))
        resolver.scheme = "http"
        let vault = urlOrigin(emu["key_vault"].isEmpty ? emu.identity : emu["key_vault"]).origin.replacingOccurrences(of: "http://", with: "")
        let setting = SecretSetting("keyvault://\(vault)/\(name)")
        let literal = SecretSetting("plain")
        XCTAssertNil(setting.current)
        XCTAssertFalse("\(setting)".contains("first-value"))
        let errors: [TierError]? = runOp(loop) { resolver.resolve([setting, literal], $0) }
        XCTAssertEqual(errors, [])
        XCTAssertEqual(setting.current?.reveal, "first-value")
        XCTAssertEqual(literal.current?.reveal, "plain")
        emu.setSecret(name, "second-value")
        let again: [TierError]? = runOp(loop) { resolver.reload($0) }
        XCTAssertEqual(again, [])
        XCTAssertEqual(setting.current?.reveal, "second-value")
        let missing = SecretSetting("keyvault://\(vault)/no-such-secret")
        let e: [TierError]? = runOp(loop) { resolver.resolve([missing], $0) }
        XCTAssertEqual(e?.count, 1)
        XCTAssertNil(missing.current)
    }

    func testRemoteTierMakerBuildsTiersFromConfig() throws {
        let cfg = try TierConfig.resolve(warm: "cosmos+http://\(emu.cosmos.dropFirst(7))/memory/state", cold: nil,
                                         dataDir: NSTemporaryDirectory(),
                                         environment: ["COSMOS_KEY": emu.cosmosKey,
                                                       "AZURE_STORAGE_CONNECTION_STRING": emu["blob_connection_string"]])
        let maker = RemoteTierMaker(config: cfg, identity: IdentityEnvironment())
        let factory = try TierFactory(config: cfg, remote: maker.maker)
        let (warm, cold) = try factory.tiers(for: loop)
        XCTAssertTrue(warm is CosmosTier)
        XCTAssertTrue(cold is BlobTier)
        for t in [warm!, cold!] {
            let r: Result<String, TierError>? = runOp(loop) { t.check($0) }
            XCTAssertTrue((try r?.get())?.hasPrefix("ok") ?? false, "\(t.name): \(String(describing: r))")
        }
    }
}
