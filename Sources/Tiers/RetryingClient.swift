import Reactor

/// Builds the request for one attempt, asynchronously (a token may have to be fetched), so that
/// every attempt carries a fresh date and signature.
public typealias RequestBuilder = (@escaping (Result<HTTPRequest, TierError>) -> Void) -> Void

/// Sends requests through a loop's `HTTPClient` with retries, deadlines and counters.
/// A response with a status it does not retry is handed back as is, for the tier to interpret;
/// a retryable failure that persists becomes `TierError.unavailable` and is counted.
public final class RetryingClient {
    public let http: HTTPClient
    public var policy: RetryPolicy
    public let counters: TierCounters
    /// Called once per operation on a 401, before one more attempt (e.g. to drop a cached token).
    public var onUnauthorized: (() -> Void)?

    public init(http: HTTPClient, policy: RetryPolicy = RetryPolicy(), counters: TierCounters = TierCounters()) {
        self.http = http
        self.policy = policy
        self.counters = counters
    }

    /// Runs one operation. `what` names it in error messages ("get blob k1").
    /// `idempotent` operations are retried after timeouts too; others only when the request
    /// surely never reached the server. A write that ends on 408/503/timeout is reported as
    /// "outcome unknown".
    public func perform(_ what: String, idempotent: Bool = true, build: @escaping RequestBuilder,
                        _ done: @escaping (Result<HTTPResponse, TierError>) -> Void) {
        Operation(client: self, what: what, idempotent: idempotent, build: build, done: done).attempt()
    }

    /// Counts an error the tier derived from a response, and returns it.
    public func failed(_ error: TierError) -> TierError {
        counters.recordFailure()
        return error
    }

    private final class Operation {
        let client: RetryingClient
        let what: String
        let idempotent: Bool
        let build: RequestBuilder
        var done: ((Result<HTTPResponse, TierError>) -> Void)?
        let startedAt = monotonicMillis()
        var attempts = 0
        var triedUnauthorized = false
        var waitTimer: Timer?

        init(client: RetryingClient, what: String, idempotent: Bool, build: @escaping RequestBuilder,
             done: @escaping (Result<HTTPResponse, TierError>) -> Void) {
            self.client = client; self.what = what; self.idempotent = idempotent
            self.build = build; self.done = done
        }

        var policy: RetryPolicy { client.policy }
        var elapsed: Int { Int(monotonicMillis() - startedAt) }
        var remaining: Int { policy.deadlineMillis - elapsed }

        func attempt() {
            build { [self] built in
                switch built {
                case .failure(let e): finish(.failure(client.failed(e)))
                case .success(var request):
                    let limit = request.timeoutMillis ?? client.http.options.requestTimeoutMillis
                    request.timeoutMillis = max(1, min(limit, remaining))
                    attempts += 1
                    client.counters.recordAttempt(retry: attempts > 1)
                    let sentAt = monotonicMillis()
                    client.http.send(request) { [self] result in
                        client.counters.recordLatency(monotonicMillis() - sentAt)
                        handle(result)
                    }
                }
            }
        }

        func handle(_ result: Result<HTTPResponse, HTTPError>) {
            switch result {
            case .success(let response):
                client.counters.recordStatus(response.status)
                if response.status == 401, !triedUnauthorized, let hook = client.onUnauthorized {
                    triedUnauthorized = true
                    hook()
                    retry(after: 0, because: "HTTP 401")
                    return
                }
                guard policy.retryStatuses.contains(response.status) else { finish(.success(response)); return }
                let hint = RetryPolicy.serverHintMillis(response, nowUnixSeconds: Int(wallClockMillis() / 1000))
                let reason = "HTTP \(response.status)" + errorCode(response)
                if !idempotent && (response.status == 408 || response.status == 503) {
                    giveUp(reason + " (outcome unknown)"); return
                }
                retryOrGiveUp(hint: hint, reason: reason)
            case .failure(let error):
                switch error {
                case .connect: retryOrGiveUp(hint: nil, reason: error.description)
                case .timeout, .transport:
                    if idempotent { retryOrGiveUp(hint: nil, reason: error.description) }
                    else { giveUp(error.description + " (outcome unknown)") }
                }
            }
        }

        func errorCode(_ r: HTTPResponse) -> String {
            if let code = r.header("x-ms-error-code") { return " " + code }
            return ""
        }

        func retryOrGiveUp(hint: Int?, reason: String) {
            if attempts >= policy.maxAttempts { giveUp(reason); return }
            let wait = policy.delayMillis(retry: attempts, serverHintMillis: hint)
            // No point waiting for a retry that cannot finish in time.
            if wait >= remaining - 1 { giveUp(reason); return }
            retry(after: wait, because: reason)
        }

        func retry(after millis: Int, because reason: String) {
            retireTimer()
            waitTimer = Timer(loop: client.http.loop, millis: millis) { [self] in attempt() }
        }

        func giveUp(_ reason: String) {
            finish(.failure(client.failed(.unavailable(
                "\(what): \(reason) after \(attempts) attempt\(attempts == 1 ? "" : "s") in \(elapsed) ms"))))
        }

        /// Drops the wait timer on a later loop turn: we may be inside its own callback.
        func retireTimer() {
            guard let t = waitTimer else { return }
            waitTimer = nil
            client.http.loop.execute { withExtendedLifetime(t) {} }
        }

        func finish(_ result: Result<HTTPResponse, TierError>) {
            retireTimer()
            let d = done
            done = nil
            d?(result)
        }
    }
}
