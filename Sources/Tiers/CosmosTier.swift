import Reactor

/// Settings for a Cosmos DB (NoSQL API) warm tier.
public struct CosmosTierConfig {
    /// Account endpoint, e.g. "https://acct.documents.azure.com:443/".
    public var endpoint: String
    public var database = "memory"
    public var container = "state"
    /// The container's partition key path: "/id" (default), "/pk" (the seed's code) or any other
    /// top-level property such as "/service"; it receives the document id as its value.
    public var partitionKeyPath = "/id"
    public var apiVersion = "2018-12-31"
    /// Scope for Entra ID tokens (default "https://{host}/.default").
    public var tokenScope: String?
    public var retry = RetryPolicy()
    public var requestTimeoutMillis = 10_000
    /// Largest value a read may decode (protects memory from a corrupt item).
    public var maxValueBytes = 256 << 20
    /// Items asked for per page when reading the container's feed (purge).
    public var feedPageSize = 100
    /// Seals values (`tier-encryption-key`); nil: stored in clear, as the seed does.
    public var cipher: EntryCipher?

    public init(endpoint: String) { self.endpoint = endpoint }
}

/// The warm tier on Cosmos DB over REST: one item per key, point reads by id + partition key,
/// upserts, deletes. Items are `CosmosDocument`s, readable by the seed library and vice versa.
/// Lives on one loop: make one per loop, with that loop's credential.
public final class CosmosTier: Tier {
    public let config: CosmosTierConfig
    public let auth: AzureAuth
    public let client: RetryingClient
    public var counters: TierCounters { client.counters }
    public let name: String
    private let origin: String
    private let collectionLink: String
    private let collectionPath: String
    private let pkProperty: String
    private let scope: String

    /// Fails if the partition key path is not a single top-level property.
    public init(loop: EventLoop, config: CosmosTierConfig, auth: AzureAuth,
                http: HTTPClient? = nil) throws(TierError) {
        guard let pk = CosmosDocument.partitionKeyProperty(config.partitionKeyPath) else {
            throw .failed("cosmos partition key path \"\(config.partitionKeyPath)\" must name one top-level property, like /id")
        }
        if case .sas = auth { throw .failed("cosmos does not take a SAS token: use a key or Entra ID") }
        self.config = config
        self.auth = auth
        pkProperty = pk
        let o = urlOrigin(config.endpoint)
        origin = o.origin
        scope = config.tokenScope ?? "https://\(o.host)/.default"
        collectionLink = "dbs/\(config.database)/colls/\(config.container)"
        let enc = { (s: String) in PercentEncoding.encode(s, keeping: PercentEncoding.unreserved) }
        collectionPath = "/dbs/\(enc(config.database))/colls/\(enc(config.container))"
        client = RetryingClient(http: http ?? HTTPClient.forLoop(loop), policy: config.retry)
        name = "warm cosmos \(origin)/\(config.database)/\(config.container)"
        if case .entraID(let c) = auth {
            let s = scope
            client.onUnauthorized = { [weak c] in c?.invalidate(scope: s) }
        }
    }

    // MARK: Tier

    public func get(_ key: TierKey, _ done: @escaping (Result<Entry?, TierError>) -> Void) {
        let id = TierNames.cosmosID(key)
        let what = "cosmos read \(id)"
        send(what, verb: "GET", type: "docs", link: docLink(id), path: docPath(id), partitionKey: .string(id), body: nil) { [self] r in
            switch r {
            case .failure(let e): done(.failure(e))
            case .success(let response):
                switch response.status {
                case 200:
                    do throws(TierError) {
                        switch try CosmosDocument.decode(response.body, wanted: key, nowMillis: wallClockMillis(),
                                                         valueLimit: config.maxValueBytes, cipher: config.cipher) {
                        case .entry(let e): done(.success(e))
                        case .foreign: done(.success(nil))
                        case .expired:
                            done(.success(nil))
                            delete(key) { _ in }
                        }
                    } catch {
                        done(.failure(client.failed(error)))
                    }
                case 404: done(.success(nil))
                default: done(.failure(client.failed(tierError(for: response, what))))
                }
            }
        }
    }

    public func put(_ key: TierKey, _ entry: Entry, _ done: @escaping (Result<Void, TierError>) -> Void) {
        let now = wallClockMillis()
        // An entry already past its expiry must not come back: storing it is deleting it.
        if entry.isExpired(at: now) { delete(key, done); return }
        let id = TierNames.cosmosID(key)
        let body: [UInt8]
        do throws(TierError) {
            body = try CosmosDocument.encode(key: key, entry: entry, id: id, partitionKeyProperty: pkProperty, nowMillis: now,
                                             cipher: config.cipher)
        } catch {
            done(.failure(error))
            return
        }
        if body.count > CosmosDocument.maxItemBytes {
            done(.failure(.tooLarge(limit: CosmosDocument.maxItemBytes)))
            return
        }
        let what = "cosmos upsert \(id)"
        send(what, verb: "POST", type: "docs", link: collectionLink, path: collectionPath + "/docs", partitionKey: .string(id),
             body: body) { [self] r in
            done(r.flatMap { response in
                switch response.status {
                case 200, 201: return .success(())
                case 413: return .failure(client.failed(.tooLarge(limit: CosmosDocument.maxItemBytes)))
                default: return .failure(client.failed(tierError(for: response, what)))
                }
            })
        }
    }

    public func delete(_ key: TierKey, _ done: @escaping (Result<Void, TierError>) -> Void) {
        let id = TierNames.cosmosID(key)
        deleteDocument(id, partitionKey: .string(id)) { done($0.map { _ in () }) }
    }

    /// Reads the container's feed a page at a time and deletes each item of database `db` (by its
    /// `tp_db`, absent meaning 0; every item when `db` is nil), `feedPageSize` items per page.
    public func purge(db: Int?, _ done: @escaping (Result<Int, TierError>) -> Void) {
        PagedPurge.run(list: { [self] continuation, listed in readFeedPage(continuation, db: db, listed) },
                       remove: { [self] item, removed in deleteDocument(item.id, partitionKey: item.partitionKey, removed) },
                       done)
    }

    public func check(_ done: @escaping (Result<String, TierError>) -> Void) {
        let what = "cosmos check \(collectionLink)"
        let saved = client.policy
        var quick = client.policy
        quick.maxAttempts = 2
        quick.deadlineMillis = min(quick.deadlineMillis, 5_000)
        client.policy = quick
        send(what, verb: "GET", type: "colls", link: collectionLink, path: collectionPath, partitionKey: nil, body: nil) { [self] r in
            client.policy = saved
            done(r.flatMap { response in
                switch response.status {
                case 200:
                    let json = JSONValue.parse(response.body)
                    if case .array(let paths)? = json?["partitionKey"]?["paths"], let first = paths.first?.string,
                       first != config.partitionKeyPath {
                        return .failure(.failed("container \(collectionLink) is partitioned on \(first), "
                                                + "but partitionKeyPath is \(config.partitionKeyPath)"))
                    }
                    var note = ""
                    if json != nil && json?["defaultTtl"] == nil { note = "; container has no default TTL, so item ttl is not enforced by the service (reads still honour it)" }
                    return .success("ok (\(name), \(auth), HTTP/\(response.version))\(note)")
                case 404:
                    return .failure(.failed("\(what): database \"\(config.database)\" or container \"\(config.container)\" not found"))
                case 401, 403:
                    return .failure(.unauthorized("\(what): \(azureErrorReason(response)) (wrong key or no access)"))
                default:
                    return .failure(tierError(for: response, what))
                }
            })
        }
    }

    /// Creates the database and container if missing (emulators, first deployments), partitioned
    /// on `partitionKeyPath`, with `defaultTtl` (-1: item ttl on, no default; nil: TTL off).
    public func createDatabaseAndContainer(defaultTtl: Int? = -1, _ done: @escaping (Result<Void, TierError>) -> Void) {
        let dbBody = JSONValue.object([("id", .string(config.database))]).serialized()
        send("cosmos create database", verb: "POST", type: "dbs", link: "", path: "/dbs", partitionKey: nil, body: dbBody,
             upsert: false) { [self] r in
            if case .failure(let e) = r { done(.failure(e)); return }
            if case .success(let resp) = r, ![200, 201, 409].contains(resp.status) {
                done(.failure(tierError(for: resp, "cosmos create database"))); return
            }
            var members: [(String, JSONValue)] = [
                ("id", .string(config.container)),
                ("partitionKey", .object([("paths", .array([.string(config.partitionKeyPath)])), ("kind", .string("Hash"))])),
            ]
            if let ttl = defaultTtl { members.append(("defaultTtl", .number(String(ttl)))) }
            let dbPath = "/dbs/" + PercentEncoding.encode(config.database, keeping: PercentEncoding.unreserved)
            send("cosmos create container", verb: "POST", type: "colls", link: "dbs/\(config.database)",
                 path: dbPath + "/colls", partitionKey: nil, body: JSONValue.object(members).serialized(), upsert: false) { r in
                done(r.flatMap { [200, 201, 409].contains($0.status) ? .success(()) : .failure(tierError(for: $0, "cosmos create container")) })
            }
        }
    }

    // MARK: Documents by id

    /// Deletes one item; true if it was there.
    private func deleteDocument(_ id: String, partitionKey: JSONValue, _ done: @escaping (Result<Bool, TierError>) -> Void) {
        let what = "cosmos delete \(id)"
        send(what, verb: "DELETE", type: "docs", link: docLink(id), path: docPath(id), partitionKey: partitionKey,
             body: nil) { [self] r in
            done(r.flatMap { response in
                switch response.status {
                case 200, 204: return .success(true)
                case 404: return .success(false)
                default: return .failure(client.failed(tierError(for: response, what)))
                }
            })
        }
    }

    /// One page of the container's feed (List Documents), reduced to the ids and partition key
    /// values of the items of database `db` (every item when nil).
    private func readFeedPage(_ continuation: String?, db: Int?,
                              _ done: @escaping (Result<PagedPurge<(id: String, partitionKey: JSONValue)>.Page, TierError>) -> Void) {
        readFeed(continuation, pageSize: config.feedPageSize) { [self] r in
            done(r.map { docs, next in
                var items = [(id: String, partitionKey: JSONValue)]()
                for doc in docs {
                    guard let id = doc["id"]?.string else { continue }
                    if let db {
                        let field: String?
                        switch doc[EntryMetadata.dbField] {
                        case .string(let s)?: field = s
                        case .number(let n)?: field = n
                        case nil: field = nil
                        default: continue  // not a db index: no tierproxy entry of any db
                        }
                        guard EntryMetadata.db(fromField: field) == db else { continue }
                    }
                    // An item without the partition key property sits in the "undefined" partition, {}.
                    items.append((id, doc[pkProperty] ?? .object([])))
                }
                return (items, next)
            })
        }
    }

    /// One page of the container's feed (List Documents): its items and the continuation token.
    func readFeed(_ continuation: String?, pageSize: Int,
                  _ done: @escaping (Result<(docs: [JSONValue], next: String?), TierError>) -> Void) {
        let what = "cosmos read feed \(collectionLink)"
        var headers = [("x-ms-max-item-count", String(max(1, pageSize)))]
        if let continuation { headers.append(("x-ms-continuation", continuation)) }
        send(what, verb: "GET", type: "docs", link: collectionLink, path: collectionPath + "/docs", partitionKey: nil,
             body: nil, headers: headers) { [self] r in
            done(r.flatMap { response in
                guard response.status == 200 else { return .failure(client.failed(tierError(for: response, what))) }
                guard case .array(let docs)? = JSONValue.parse(response.body)?["Documents"] else {
                    return .failure(client.failed(.failed("\(what): the response has no Documents array")))
                }
                return .success((docs, response.header("x-ms-continuation").flatMap { $0.isEmpty ? nil : $0 }))
            })
        }
    }

    // MARK: Requests

    private func docLink(_ id: String) -> String { collectionLink + "/docs/" + id }
    private func docPath(_ id: String) -> String {
        collectionPath + "/docs/" + PercentEncoding.encode(id, keeping: PercentEncoding.unreserved)
    }

    /// Sends one signed request (re-signed on each attempt).
    private func send(_ what: String, verb: String, type: String, link: String, path: String, partitionKey: JSONValue?,
                      body: [UInt8]?, upsert: Bool = true, headers extra: [(String, String)] = [],
                      _ done: @escaping (Result<HTTPResponse, TierError>) -> Void) {
        let url = origin + path
        var fixed: [(String, String)] = [("x-ms-version", config.apiVersion), ("Accept", "application/json")] + extra
        if let pk = partitionKey {
            fixed.append(("x-ms-documentdb-partitionkey",
                          String(decoding: JSONValue.array([pk]).serialized(asciiOnly: true), as: UTF8.self)))
        }
        if body != nil {
            fixed.append(("Content-Type", "application/json"))
            if upsert { fixed.append(("x-ms-documentdb-is-upsert", "True")) }
        }
        let timeout = config.requestTimeoutMillis
        let build: RequestBuilder = { [auth, scope] ready in
            let date = HTTPDate.now()
            func make(_ authorization: String) -> HTTPRequest {
                HTTPRequest(method: verb, url: url, headers: fixed + [("x-ms-date", date), ("authorization", authorization)],
                            body: body ?? [], timeoutMillis: timeout)
            }
            switch auth {
            case .sharedKey(let setting):
                ready(auth.keyBytes(setting, "cosmos").map {
                    make(CosmosAuth.masterKeyAuthorization(key: $0, verb: verb, resourceType: type, resourceLink: link, date: date))
                })
            case .entraID(let credential):
                credential.token(for: scope) { t in ready(t.map { make(CosmosAuth.tokenAuthorization($0.token.reveal)) }) }
            case .sas:
                ready(.failure(.unauthorized("cosmos does not take a SAS token")))
            }
        }
        client.perform(what, build: build, done)
    }
}
