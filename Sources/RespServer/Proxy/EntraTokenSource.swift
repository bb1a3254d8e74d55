import Reactor
import Tiers

/// `upstream-auth entra`: fetches the upstream's Entra ID token (scope
/// https://redis.azure.com/.default) on the main loop, through libcurl driven by that loop, and
/// publishes it with its user (the token's `oid` claim, or `upstream-user`) to every loop
/// (`UpstreamCredential`). The next token is fetched at 80% of the lifetime but at least five
/// minutes before expiry (Azure asks for a new AUTH at least three minutes before), and never
/// sooner than half the lifetime; a failed fetch is retried with backoff (1 s doubling to 30 s),
/// logged each time, while the current token still works.
final class EntraTokenSource {
    static let scope = "https://redis.azure.com/.default"
    private let loop: EventLoop
    private let credential: UpstreamCredential
    private let fetcher: TokenFetcher
    private let http: HTTPClient
    private let user: String?
    private var timer: Timer?
    private var backoffMillis = 1000
    private var current: AccessToken?

    init(loop: EventLoop, config: Config, credential: UpstreamCredential, environment: [String: String]) {
        self.loop = loop
        self.credential = credential
        var options = HTTPClientOptions()
        if !config.tierTLSCaCertFile.isEmpty { options.caBundlePath = config.tierTLSCaCertFile }
        http = HTTPClient(loop: loop, options: options)
        fetcher = IdentityEnvironment.from(environment).makeFetcher(http: http)
        user = config.upstreamUser.isEmpty ? nil : config.upstreamUser
    }

    var kind: String { fetcher.kind }

    func start() { fetch() }

    func stop() { timer?.cancel(); timer = nil }

    private func fetch() {
        fetcher.fetchToken(for: EntraTokenSource.scope) { [weak self] result in self?.fetched(result) }
    }

    private func fetched(_ result: Result<AccessToken, TierError>) {
        let now = wallClockMillis() / 1000
        switch result {
        case .success(let token):
            guard let name = user ?? EntraTokenSource.objectId(fromJWT: token.token.reveal) else {
                failed("the token from \(kind) has no oid claim; set upstream-user to the object id", now: now)
                return
            }
            let first = current == nil
            current = token
            backoffMillis = 1000
            let life = max(token.expiresOn - now, 1)
            let next = EntraTokenSource.refreshDelay(lifetime: life)
            let line = "Upstream Entra ID token from \(kind) for user \(name): valid \(life) s, next fetch in \(next) s"
            if first { Log.notice(line) } else { Log.verbose(line) }
            credential.publish(.ready(user: name, password: token.token))
            schedule(millis: Int(next) * 1000)
        case .failure(let e):
            failed("\(e)", now: now)
        }
    }

    private func failed(_ why: String, now: Int64) {
        let left = current.map { $0.expiresOn - now } ?? 0
        Log.warning("Upstream Entra ID token from \(kind) not renewed: \(why)"
                    + (left > 0 ? "; the current one works \(left) s more; retrying in \(backoffMillis / 1000) s"
                                : "; upstream connections fail until one is had; retrying in \(backoffMillis / 1000) s"))
        if left <= 0 {
            current = nil
            credential.publish(.failed("no Entra ID token for the upstream: \(why)"))
        }
        schedule(millis: backoffMillis)
        backoffMillis = min(backoffMillis * 2, 30_000)
    }

    private func schedule(millis: Int) {
        timer?.cancel()
        timer = Timer(loop: loop, millis: max(millis, 1)) { [weak self] in self?.fetch() }
    }

    /// Seconds after a fetch to fetch again: 80% of the lifetime, but at least 5 minutes before
    /// expiry, and no sooner than half the lifetime (short test tokens).
    static func refreshDelay(lifetime: Int64) -> Int64 {
        max(lifetime / 2, min(lifetime * 4 / 5, lifetime - 300), 1)
    }

    /// The `oid` claim of a JWT access token (its payload is base64url JSON), nil if none.
    static func objectId(fromJWT token: String) -> String? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let payload = Base64.decode(String(parts[1])),
              let oid = JSONValue.parse(payload)?["oid"]?.string, !oid.isEmpty else { return nil }
        return oid
    }
}
