/// An Entra ID access token and when it stops working.
public struct AccessToken: Sendable, CustomStringConvertible {
    public var token: Secret
    /// Unix seconds.
    public var expiresOn: Int64
    public init(token: Secret, expiresOn: Int64) { self.token = token; self.expiresOn = expiresOn }
    public var description: String { "AccessToken(\(token), expires \(expiresOn))" }
}

/// Gives bearer tokens for a scope ("https://storage.azure.com/.default"), asynchronously, on the
/// loop it was made for. Implementations cache; `invalidate` drops a token the service refused.
public protocol TokenCredential: AnyObject {
    /// Short description for `tiers check` and logs (never a secret).
    var kind: String { get }
    func token(for scope: String, _ done: @escaping (Result<AccessToken, TierError>) -> Void)
    func invalidate(scope: String)
}

/// Fetches one fresh token (no caching): what each identity source implements.
public protocol TokenFetcher: AnyObject {
    var kind: String { get }
    func fetchToken(for scope: String, _ done: @escaping (Result<AccessToken, TierError>) -> Void)
}

/// Caches a fetcher's tokens per scope and refreshes them ahead of expiry: callers get the cached
/// token while a refresh runs in the background, and concurrent misses share one fetch.
public final class CachingTokenCredential: TokenCredential {
    public let fetcher: TokenFetcher
    /// Refresh this long before expiry (or at half the lifetime, if sooner).
    public var refreshAheadSeconds: Int64 = 300
    private var cached = [String: AccessToken]()
    private var waiting = [String: [(Result<AccessToken, TierError>) -> Void]]()
    private let clock: () -> Int64
    /// Fetches made (for tests and stats).
    public private(set) var fetches = 0

    /// `clock` gives Unix seconds (nil: the wall clock); tests pass their own.
    public init(_ fetcher: TokenFetcher, clock: (() -> Int64)? = nil) {
        self.fetcher = fetcher
        self.clock = clock ?? { wallClockMillis() / 1000 }
    }

    public var kind: String { fetcher.kind }

    public func token(for scope: String, _ done: @escaping (Result<AccessToken, TierError>) -> Void) {
        let now = clock()
        if let t = cached[scope], t.expiresOn > now + 30 {
            if t.expiresOn - now <= refreshAheadSeconds && waiting[scope] == nil { refresh(scope) { _ in } }
            done(.success(t))
            return
        }
        refresh(scope, done)
    }

    public func invalidate(scope: String) { cached[scope] = nil }

    private func refresh(_ scope: String, _ done: @escaping (Result<AccessToken, TierError>) -> Void) {
        if waiting[scope] != nil { waiting[scope]!.append(done); return }
        waiting[scope] = [done]
        fetches += 1
        fetcher.fetchToken(for: scope) { [self] result in
            if case .success(let t) = result { cached[scope] = t }
            let callers = waiting.removeValue(forKey: scope) ?? []
            // A failed background refresh leaves a still-valid cached token in place.
            for c in callers {
                if case .failure = result, let t = cached[scope], t.expiresOn > clock() + 30 { c(.success(t)) } else { c(result) }
            }
        }
    }
}

/// A fixed token (tests, or a token handed over by an operator).
public final class StaticTokenCredential: TokenCredential {
    public let accessToken: AccessToken
    public init(_ token: AccessToken) { accessToken = token }
    public var kind: String { "static token" }
    public func token(for scope: String, _ done: @escaping (Result<AccessToken, TierError>) -> Void) { done(.success(accessToken)) }
    public func invalidate(scope: String) {}
}

/// Tries each credential in order; the first that yields a token is used from then on.
public final class ChainedTokenCredential: TokenCredential {
    public let sources: [TokenCredential]
    private var chosen: TokenCredential?
    public init(_ sources: [TokenCredential]) { self.sources = sources }

    public var kind: String { chosen?.kind ?? sources.map(\.kind).joined(separator: " → ") }

    public func token(for scope: String, _ done: @escaping (Result<AccessToken, TierError>) -> Void) {
        if let c = chosen { c.token(for: scope, done); return }
        tryFrom(0, scope, errors: [], done)
    }

    private func tryFrom(_ i: Int, _ scope: String, errors: [String],
                         _ done: @escaping (Result<AccessToken, TierError>) -> Void) {
        guard i < sources.count else {
            done(.failure(.unauthorized("no credential yielded a token: " + errors.joined(separator: "; "))))
            return
        }
        sources[i].token(for: scope) { [self] r in
            switch r {
            case .success: chosen = sources[i]; done(r)
            case .failure(let e): tryFrom(i + 1, scope, errors: errors + ["\(sources[i].kind): \(e)"], done)
            }
        }
    }

    public func invalidate(scope: String) { chosen?.invalidate(scope: scope) }
}
