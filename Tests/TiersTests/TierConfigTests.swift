import Reactor
import Testing
@testable import Tiers

@Suite struct TierConfigTests {
    @Test func parsesEverySchemeAndNone() throws {
        #expect(try TierSpec.parse("sqlite:/var/lib/tp/warm.db", role: .warm) == .sqlite(path: "/var/lib/tp/warm.db"))
        #expect(try TierSpec.parse("sqlite:///abs/warm.db", role: .warm) == .sqlite(path: "/abs/warm.db"))
        #expect(try TierSpec.parse("  dir:data/cold ", role: .cold) == .directory(path: "data/cold"))
        #expect(try TierSpec.parse("none", role: .warm) == TierSpec.none)
        #expect(try TierSpec.parse("none", role: .cold) == TierSpec.none)

        guard case .cosmos(let c) = try TierSpec.parse("cosmos://acct.documents.azure.com:443/memory/state", role: .warm) else {
            Issue.record("not cosmos"); return
        }
        #expect(c.endpoint == "https://acct.documents.azure.com:443" && c.database == "memory" && c.container == "state")
        #expect(c.key == nil)
        guard case .cosmos(let emu) = try TierSpec.parse("cosmos+http://localhost:8081/db/c?key=a%2Bb%3D%3D&partition-key-path=/service", role: .warm) else {
            Issue.record("not cosmos"); return
        }
        #expect(emu.endpoint == "http://localhost:8081" && emu.key == "a+b==" && emu.options["partition-key-path"] == "/service")

        guard case .blob(let b) = try TierSpec.parse("blob://acct.blob.core.windows.net/memory", role: .cold) else {
            Issue.record("not blob"); return
        }
        #expect(b.accountURL == "https://acct.blob.core.windows.net" && b.container == "memory" && b.accountName == "acct")
        guard case .blob(let azurite) = try TierSpec.parse("blob+http://127.0.0.1:10000/devstoreaccount1/memory", role: .cold) else {
            Issue.record("not blob"); return
        }
        #expect(azurite.accountURL == "http://127.0.0.1:10000/devstoreaccount1" && azurite.container == "memory")
        #expect(azurite.accountName == "devstoreaccount1")
        guard case .blob(let sas) = try TierSpec.parse("blob://acct.blob.core.windows.net/c?sv=2021-08-06&sig=abc%3D", role: .cold) else {
            Issue.record("not blob"); return
        }
        #expect(sas.sasToken == "sv=2021-08-06&sig=abc%3D")
    }

    @Test func errorsSayWhatIsWrong() {
        func message(_ text: String, _ role: TierConfig.Role) -> String {
            do { _ = try TierSpec.parse(text, role: role); return "" } catch { return error.description }
        }
        #expect(message("redis://x", .warm).contains("unknown scheme \"redis\""))
        #expect(message("redis://x", .warm).contains("sqlite:PATH"))
        #expect(message("dir:/x", .warm).contains("dir is not a warm tier"))
        #expect(message("sqlite:/x", .cold).contains("not a cold tier"))
        #expect(message("cosmos://host/onlydb", .warm).contains("DATABASE/CONTAINER"))
        #expect(message("sqlite:", .warm).contains("needs a path"))
        #expect(message("nonsense", .cold).contains("expected blob://"))
        #expect(message("blob://", .cold).contains("missing host"))
    }

    @Test func defaultsAreEmbeddedUnderTheDataDirectory() throws {
        let c = try TierConfig.resolve(warm: nil, cold: nil, dataDir: "/data/", environment: [:])
        #expect(c.warm == .sqlite(path: "/data/warm.db"))
        #expect(c.cold == .directory(path: "/data/cold"))
        #expect(c.compressThreshold == 1 << 20)
    }

    @Test func seedEnvironmentVariablesSelectAzure() throws {
        let env = ["COSMOS_ENDPOINT": "https://acct.documents.azure.com:443/", "COSMOS_KEY": "k==",
                   "BLOB_ACCOUNT_URL": "https://acct.blob.core.windows.net/", "BLOB_CONTAINER": "archive"]
        let c = try TierConfig.resolve(warm: nil, cold: nil, dataDir: "d", environment: env)
        #expect(c.warm == .cosmos(try CosmosSpec(endpoint: "https://acct.documents.azure.com:443", database: "memory",
                                                 container: "state", key: "k==")))
        #expect(c.cold == .blob(try BlobSpec(accountURL: "https://acct.blob.core.windows.net", container: "archive")))
        // COSMOS_ACCOUNT_URI wins over its alias; settings win over both, and still take the key.
        let both = try TierConfig.resolve(warm: nil, cold: "none", dataDir: "d",
                                          environment: env.merging(["COSMOS_ACCOUNT_URI": "https://other:443",
                                                                    "COSMOS_DATABASE": "db", "COSMOS_CONTAINER": "c"]) { $1 })
        guard case .cosmos(let cosmos) = both.warm else { Issue.record("not cosmos"); return }
        #expect(cosmos.endpoint == "https://other:443" && cosmos.database == "db" && cosmos.container == "c")
        #expect(both.cold == TierSpec.none)
        let explicit = try TierConfig.resolve(warm: "cosmos://x.documents.azure.com/a/b", cold: nil, dataDir: "d", environment: env)
        guard case .cosmos(let e) = explicit.warm else { Issue.record("not cosmos"); return }
        #expect(e.key == "k==" && e.database == "a")
    }

    @Test func connectionStringsParse() throws {
        let full = try StorageConnectionString.parse(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5+/==;EndpointSuffix=core.chinacloudapi.cn;")
        #expect(full.accountName == "acct" && full.accountKey == "a2V5+/==")
        #expect(full.blobAccountURL == "https://acct.blob.core.chinacloudapi.cn")

        let dev = try StorageConnectionString.parse("UseDevelopmentStorage=true")
        #expect(dev.useDevelopmentStorage && dev.accountName == "devstoreaccount1")
        #expect(dev.accountKey == StorageConnectionString.developmentAccountKey)
        #expect(dev.blobAccountURL == "http://127.0.0.1:10000/devstoreaccount1")

        let sas = try StorageConnectionString.parse("BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=?sv=1&sig=x%3D")
        #expect(sas.blobAccountURL == "https://acct.blob.core.windows.net" && sas.sharedAccessSignature == "sv=1&sig=x%3D")

        let azurite = try StorageConnectionString.parse(
            "DefaultEndpointsProtocol=http;accountname=devstoreaccount1;AccountKey=\(StorageConnectionString.developmentAccountKey);BlobEndpoint=http://azurite:10000/devstoreaccount1;")
        #expect(azurite.blobAccountURL == "http://azurite:10000/devstoreaccount1" && azurite.accountName == "devstoreaccount1")

        #expect(throws: TierError.self) { try StorageConnectionString.parse("AccountKey=abc") }
        #expect(throws: TierError.self) { try StorageConnectionString.parse("garbage") }
        #expect(throws: TierError.self) { try StorageConnectionString.parse("AccountName=a;DefaultEndpointsProtocol=ftp") }

        // The connection string selects Blob and supplies its credentials.
        let c = try TierConfig.resolve(warm: "none", cold: nil, dataDir: "d",
                                       environment: ["AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"])
        guard case .blob(let b) = c.cold else { Issue.record("not blob"); return }
        #expect(b.accountURL == "http://127.0.0.1:10000/devstoreaccount1" && b.container == "memory")
        #expect(b.accountName == "devstoreaccount1" && b.accountKey == StorageConnectionString.developmentAccountKey)
    }

    @Test func factoryOpensEmbeddedTiersAndAsksTheHookForRemoteOnes() throws {
        let dir = try TempDir()
        let harness = LoopHarness()
        let local = try TierConfig.resolve(warm: nil, cold: nil, dataDir: dir.path + "/nested/data", environment: [:])
        let factory = try TierFactory(config: local)
        defer { factory.close() }
        let (warm, cold) = try factory.tiers(for: harness.loop)
        #expect(warm?.name == "sqlite:\(dir.path)/nested/data/warm.db")
        #expect(cold?.name == "dir:\(dir.path)/nested/data/cold")
        try harness.wait("warm put") { warm!.put(TierKey("k"), Entry(value: [1]), $0) }.get()

        // Remote specs go to the hook, once per loop; without a hook, startup fails clearly.
        let remoteConfig = TierConfig(warm: try TierSpec.parse("cosmos://a.documents.azure.com/d/c", role: .warm), cold: .none)
        #expect(throws: TierError.self) { try TierFactory(config: remoteConfig) }
        var asked = [String]()
        let withHook = try TierFactory(config: remoteConfig) { spec, loop throws(TierError) in
            asked.append(spec.description)
            return try DirectoryTier(path: dir.path + "/stand-in").tier(for: loop)
        }
        let pair = try withHook.tiers(for: harness.loop)
        #expect(pair.warm != nil && pair.cold == nil)
        #expect(asked == ["cosmos https://a.documents.azure.com/d/c"])
    }
}
