import Reactor

/// Settings for a Blob Storage cold tier.
public struct BlobTierConfig {
    /// Account URL: "https://acct.blob.core.windows.net", or path-style (Azurite, emulators)
    /// "http://127.0.0.1:10000/devstoreaccount1".
    public var accountURL: String
    public var container = "memory"
    /// Account name; nil = from the URL (the first path segment when path-style, else the host's first label).
    public var account: String?
    /// Pinned so Azurite accepts it (it rejects versions newer than it knows).
    public var apiVersion = "2021-08-06"
    /// Values up to this size go up in one Put Blob; larger ones as blocks plus a block list.
    public var singlePutLimit = 32 << 20
    public var blockSize = 8 << 20
    /// Block uploads in flight at once for one blob.
    public var blockParallelism = 4
    /// Values at least this large are stored gzip (`Content-Encoding: gzip`, `tp_enc=gzip`).
    public var compressThreshold = 1 << 20
    /// Largest value a read may decode.
    public var maxValueBytes = 256 << 20
    /// Blobs asked for per List Blobs page (purge); the service returns at most 5000.
    public var listPageSize = 5000
    public var tokenScope = "https://storage.azure.com/.default"
    /// Seals blob bodies (`tier-encryption-key`), after compression; nil: stored in clear.
    public var cipher: EntryCipher?
    public var retry = RetryPolicy()
    public var requestTimeoutMillis = 30_000

    public init(accountURL: String) { self.accountURL = accountURL }

    /// The account name from `account` or the URL.
    public var resolvedAccount: String {
        if let a = account { return a }
        var rest = Substring(accountURL)
        if let r = rest.firstIndex(of: ":"), rest[r...].hasPrefix("://") { rest = rest[rest.index(r, offsetBy: 3)...] }
        let parts = rest.split(separator: "/")
        if parts.count >= 2 { return String(parts[1]) }
        return parts.first.map { String($0.split(separator: ".").first ?? $0) } ?? ""
    }
}

/// The cold tier on Blob Storage over REST: one block blob per key, named by `TierNames.blobName`
/// (the key itself for readable db-0 keys, like the seed), metadata in `x-ms-meta-tp_*`,
/// large values gzip-compressed. Lives on one loop: make one per loop.
public final class BlobTier: Tier {
    public let config: BlobTierConfig
    public let auth: AzureAuth
    public let client: RetryingClient
    public var counters: TierCounters { client.counters }
    public let name: String
    public let account: String
    private let containerURL: String
    private let containerPath: String

    public init(loop: EventLoop, config: BlobTierConfig, auth: AzureAuth, http: HTTPClient? = nil) {
        self.config = config
        self.auth = auth
        account = config.resolvedAccount
        var base = config.accountURL
        while base.hasSuffix("/") { base.removeLast() }
        containerURL = base + "/" + PercentEncoding.encode(config.container, keeping: PercentEncoding.unreserved)
        containerPath = BlobURL.split(containerURL).path
        client = RetryingClient(http: http ?? HTTPClient.forLoop(loop), policy: config.retry)
        name = "cold blob \(containerURL)"
        if case .entraID(let c) = auth {
            let scope = config.tokenScope
            client.onUnauthorized = { [weak c] in c?.invalidate(scope: scope) }
        }
    }

    // MARK: Tier

    public func get(_ key: TierKey, _ done: @escaping (Result<Entry?, TierError>) -> Void) {
        let blob = TierNames.blobName(key)
        let what = "blob get \(blob)"
        send(what, method: "GET", blob: blob) { [self] r in
            switch r {
            case .failure(let e): done(.failure(e))
            case .success(let response):
                switch response.status {
                case 200:
                    switch decode(response, key: key) {
                    case .failure(let e): done(.failure(client.failed(e)))
                    case .success(let entry?) where entry.isExpired(at: wallClockMillis()):
                        done(.success(nil))
                        delete(key) { _ in }
                    case .success(let entry): done(.success(entry))
                    }
                case 404: done(.success(nil))
                default: done(.failure(client.failed(tierError(for: response, what))))
                }
            }
        }
    }

    public func put(_ key: TierKey, _ entry: Entry, _ done: @escaping (Result<Void, TierError>) -> Void) {
        if entry.isExpired(at: wallClockMillis()) { delete(key, done); return }
        let blob = TierNames.blobName(key)
        let gzip = entry.value.count >= config.compressThreshold
        var stored = gzip ? Gzip.compress(entry.value) : entry.value
        if let cipher = config.cipher {
            do throws(TierError) {
                stored = try cipher.seal(key: key, expiresAtMillis: entry.expiresAtMillis, type: entry.type,
                                         encoding: gzip ? .gzip : .raw, storedValue: stored)
            } catch {
                done(.failure(error))
                return
            }
        }
        // A sealed body is not gzip to HTTP: its encoding is inside the seal.
        let compress = gzip && config.cipher == nil
        var meta = [(String, String)]()
        for (n, v) in EntryMetadata(key: key, entry: entry, name: blob, encoding: compress ? .gzip : .raw,
                                    sealed: config.cipher != nil).fields {
            meta.append(("x-ms-meta-" + n, v))
        }
        if stored.count <= config.singlePutLimit {
            var headers = meta + [("x-ms-blob-type", "BlockBlob"), ("Content-Type", "application/octet-stream")]
            if compress { headers.append(("Content-Encoding", "gzip")) }
            let what = "blob put \(blob)"
            send(what, method: "PUT", blob: blob, headers: headers, body: stored) { [self] r in
                done(r.flatMap { $0.status == 201 || $0.status == 200 ? .success(()) : .failure(client.failed(tierError(for: $0, what))) })
            }
        } else {
            putBlocks(blob, stored, meta: meta, compressed: compress, done)
        }
    }

    public func delete(_ key: TierKey, _ done: @escaping (Result<Void, TierError>) -> Void) {
        deleteBlob(TierNames.blobName(key)) { done($0.map { _ in () }) }
    }

    /// Lists the container a page at a time (with metadata) and deletes each blob of database
    /// `db` (by its `tp_db` metadata, absent meaning 0; every blob when `db` is nil).
    public func purge(db: Int?, _ done: @escaping (Result<Int, TierError>) -> Void) {
        PagedPurge.run(list: { [self] marker, listed in listPage(marker, db: db, listed) },
                       remove: { [self] blob, removed in deleteBlob(blob, removed) },
                       done)
    }

    public func check(_ done: @escaping (Result<String, TierError>) -> Void) {
        let what = "blob check \(containerURL)"
        let saved = client.policy
        var quick = saved
        quick.maxAttempts = 2
        quick.deadlineMillis = min(quick.deadlineMillis, 5_000)
        client.policy = quick
        send(what, method: "GET", blob: nil, query: [("restype", "container")]) { [self] r in
            client.policy = saved
            done(r.flatMap { response in
                switch response.status {
                case 200: return .success("ok (\(name), account \(account), \(auth), HTTP/\(response.version))")
                case 404: return .failure(.failed("\(what): container \"\(config.container)\" not found (\(azureErrorReason(response)))"))
                case 401, 403: return .failure(.unauthorized("\(what): \(azureErrorReason(response)) (wrong key, SAS or role)"))
                default: return .failure(tierError(for: response, what))
                }
            })
        }
    }

    /// Creates the container (for emulators and first deployments); an existing one is fine.
    public func createContainer(_ done: @escaping (Result<Void, TierError>) -> Void) {
        let what = "blob create container \(config.container)"
        send(what, method: "PUT", blob: nil, query: [("restype", "container")]) { [self] r in
            done(r.flatMap { [201, 409].contains($0.status) ? .success(()) : .failure(client.failed(tierError(for: $0, what))) })
        }
    }

    // MARK: Blobs by name

    /// Deletes one blob; true if it was there.
    private func deleteBlob(_ blob: String, _ done: @escaping (Result<Bool, TierError>) -> Void) {
        let what = "blob delete \(blob)"
        send(what, method: "DELETE", blob: blob) { [self] r in
            done(r.flatMap { response in
                switch response.status {
                case 200, 202, 204: return .success(true)
                case 404: return .success(false)
                default: return .failure(client.failed(tierError(for: response, what)))
                }
            })
        }
    }

    /// One List Blobs page, reduced to the names of the blobs of database `db` (every blob when nil).
    private func listPage(_ marker: String?, db: Int?, _ done: @escaping (Result<PagedPurge<String>.Page, TierError>) -> Void) {
        listBlobs(marker, prefix: nil, pageSize: config.listPageSize) { r in
            done(r.map { listing in
                let names = listing.blobs.filter { blob in
                    !blob.name.isEmpty && (db == nil || EntryMetadata.db(fromField: blob.metadata[EntryMetadata.dbField]) == db)
                }.map(\.name)
                return (names, listing.nextMarker)
            })
        }
    }

    /// One List Blobs page with metadata, from `marker`, of the names starting with `prefix`.
    func listBlobs(_ marker: String?, prefix: String?, pageSize: Int, _ done: @escaping (Result<BlobListing, TierError>) -> Void) {
        let what = "blob list \(config.container)"
        var query = [("restype", "container"), ("comp", "list"), ("include", "metadata"),
                     ("maxresults", String(min(5000, max(1, pageSize))))]
        if let prefix { query.append(("prefix", prefix)) }
        if let marker { query.append(("marker", marker)) }
        send(what, method: "GET", blob: nil, query: query) { [self] r in
            done(r.flatMap { response in
                guard response.status == 200 else { return .failure(client.failed(tierError(for: response, what))) }
                guard let listing = BlobListing.parse(response.body) else {
                    return .failure(client.failed(.failed("\(what): the response is not a blob listing: \(response.bodySnippet)")))
                }
                return .success(listing)
            })
        }
    }

    // MARK: Values

    private func decode(_ response: HTTPResponse, key: TierKey) -> Result<Entry?, TierError> {
        do throws(TierError) {
            let meta = try EntryMetadata.parse { response.header("x-ms-meta-" + $0) }
            guard meta.belongs(to: key) else { return .success(nil) }
            if meta.sealed {
                return .success(try meta.openSealed(response.body, wanted: key, cipher: config.cipher, valueLimit: config.maxValueBytes))
            }
            let gzip = meta.encoding == .gzip || response.header("content-encoding")?.lowercased() == "gzip"
            let value = gzip ? try Gzip.decompress(response.body, limit: config.maxValueBytes) : response.body
            return .success(meta.entry(value: value))
        } catch {
            return .failure(error)
        }
    }

    /// Put Block for each `blockSize` slice (a few at a time), then Put Block List with the
    /// blob's content headers and metadata.
    private func putBlocks(_ blob: String, _ bytes: [UInt8], meta: [(String, String)], compressed: Bool,
                           _ done: @escaping (Result<Void, TierError>) -> Void) {
        let size = max(1, config.blockSize)
        let count = (bytes.count + size - 1) / size
        if count > 50_000 { done(.failure(.tooLarge(limit: 50_000 * size))); return }
        // Equal-length ids within a blob: a fixed-width counter, base64.
        let ids = (0..<count).map { i -> String in
            let n = String(i)
            return Base64.encode(Array(("tp-" + String(repeating: "0", count: 6 - n.count) + n).utf8))
        }
        var next = 0, finished = 0, failed: TierError?
        func startNext() {
            guard failed == nil, next < count else { return }
            let i = next
            next += 1
            let slice = Array(bytes[i * size..<min(bytes.count, (i + 1) * size)])
            let what = "blob put block \(i) of \(blob)"
            send(what, method: "PUT", blob: blob, query: [("comp", "block"), ("blockid", ids[i])], body: slice) { [self] r in
                switch r {
                case .success(let resp) where resp.status == 201: break
                case .success(let resp): failed = failed ?? client.failed(tierError(for: resp, what))
                case .failure(let e): failed = failed ?? e
                }
                finished += 1
                if let e = failed {
                    if finished == next { done(.failure(e)) }
                    return
                }
                if finished == count { commit() } else { startNext() }
            }
        }
        func commit() {
            var xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>"
            for id in ids { xml += "<Latest>\(id)</Latest>" }
            xml += "</BlockList>"
            var headers = meta + [("x-ms-blob-content-type", "application/octet-stream"), ("Content-Type", "application/xml")]
            if compressed { headers.append(("x-ms-blob-content-encoding", "gzip")) }
            let what = "blob put block list \(blob)"
            send(what, method: "PUT", blob: blob, query: [("comp", "blocklist")], headers: headers, body: Array(xml.utf8)) { [self] r in
                done(r.flatMap { $0.status == 201 ? .success(()) : .failure(client.failed(tierError(for: $0, what))) })
            }
        }
        for _ in 0..<min(count, max(1, config.blockParallelism)) { startNext() }
    }

    // MARK: Requests

    /// Sends one authorized request for `blob` (nil: the container), re-signed on each attempt.
    private func send(_ what: String, method: String, blob: String?, query: [(String, String)] = [],
                      headers extra: [(String, String)] = [], body: [UInt8] = [],
                      _ done: @escaping (Result<HTTPResponse, TierError>) -> Void) {
        var url = containerURL
        if let b = blob { url += "/" + PercentEncoding.encode(b, keeping: PercentEncoding.pathSafe) }
        let path = containerPath + (blob.map { "/" + PercentEncoding.encode($0, keeping: PercentEncoding.pathSafe) } ?? "")
        if !query.isEmpty {
            url += "?" + query.map { $0.0 + "=" + PercentEncoding.encode($0.1, keeping: PercentEncoding.queryValueSafe) }
                .joined(separator: "&")
        }
        let fixed = extra + [("x-ms-version", config.apiVersion)]
        let timeout = config.requestTimeoutMillis
        let (auth, account, scope) = (self.auth, self.account, config.tokenScope)
        let build: RequestBuilder = { ready in
            let headers = fixed + [("x-ms-date", HTTPDate.now())]
            switch auth {
            case .sharedKey(let setting):
                ready(auth.keyBytes(setting, "blob").map { key in
                    let sts = BlobAuth.stringToSign(method: method, account: account, path: path, query: query,
                                                    headers: headers, contentLength: body.count)
                    return HTTPRequest(method: method, url: url,
                                       headers: headers + [("Authorization", BlobAuth.sharedKeyAuthorization(account: account, key: key, stringToSign: sts))],
                                       body: body, timeoutMillis: timeout)
                })
            case .sas(let setting):
                guard let sas = setting.current else {
                    ready(.failure(.unauthorized("blob SAS \(setting) is not resolved yet"))); return
                }
                ready(.success(HTTPRequest(method: method, url: BlobAuth.appendSAS(sas.reveal, to: url), headers: headers,
                                           body: body, timeoutMillis: timeout)))
            case .entraID(let credential):
                credential.token(for: scope) { t in
                    ready(t.map {
                        HTTPRequest(method: method, url: url, headers: headers + [("Authorization", BlobAuth.bearerAuthorization($0.token.reveal))],
                                    body: body, timeoutMillis: timeout)
                    })
                }
            }
        }
        client.perform(what, build: build, done)
    }
}
