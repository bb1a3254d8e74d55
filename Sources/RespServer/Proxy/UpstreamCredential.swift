import Reactor
import Tiers
import Glibc

/// What the proxy's upstream connections authenticate with, shared by every loop: nothing, the
/// URL's user and password (a literal, or `keyvault://` resolved at start and on SIGHUP), or an
/// Entra ID token (`upstream-auth entra`, published by `EntraTokenSource`). Each new connection
/// reads the value current when it opens; a changed value is announced to every loop, whose
/// waiting connections go on and whose live ones re-authenticate (`EntraReauth`).
final class UpstreamCredential: @unchecked Sendable {
    enum State {
        /// No AUTH (no password configured).
        case none
        case ready(user: String?, password: Secret)
        /// Key Vault or the token endpoint has not answered yet: connections wait.
        case pending
        /// No credential can be had now (the reason never holds a secret): connections fail.
        case failed(String)
    }

    let entra: Bool
    let db: Int
    /// The URL's password (password mode), or nil.
    let password: SecretSetting?
    private let urlUser: String?
    private var lock = pthread_mutex_t()
    private var entraState = State.pending
    private var lastPassword: Secret?
    private var passwordError: String?
    private var watchers: [(loop: EventLoop, changed: () -> Void)] = []

    init(config: Config) {
        entra = config.upstreamEntra
        db = config.upstream.db
        urlUser = config.upstream.user
        password = entra ? nil : config.upstream.password.map(SecretSetting.init)
        lastPassword = password?.current
        pthread_mutex_init(&lock, nil)
    }

    deinit { pthread_mutex_destroy(&lock) }

    var state: State {
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        if entra { return entraState }
        guard let password else { return .none }
        if let p = password.current { return .ready(user: urlUser, password: p) }
        return passwordError.map { .failed($0) } ?? .pending
    }

    /// The AUTH/SELECT a new connection sends first and how many replies that owes; nil while
    /// pending, a reason when no credential can be had.
    func handshake() -> Result<(bytes: [UInt8], replies: Int), UpstreamAuthError>? {
        var bytes = [UInt8]()
        var replies = 0
        switch state {
        case .pending: return nil
        case .failed(let why): return .failure(UpstreamAuthError(message: why))
        case .none: break
        case .ready(let user, let password):
            bytes += UpstreamCommands.format(UpstreamCredential.auth(user, password))
            replies += 1
        }
        if db != 0 {
            bytes += UpstreamCommands.format(["SELECT", String(db)])
            replies += 1
        }
        return .success((bytes, replies))
    }

    /// `AUTH [user] password`.
    static func auth(_ user: String?, _ password: Secret) -> [String] {
        user.map { ["AUTH", $0, password.reveal] } ?? ["AUTH", password.reveal]
    }

    /// Calls `changed` on `loop` whenever the credential changes.
    func watch(on loop: EventLoop, _ changed: @escaping () -> Void) {
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        watchers.append((loop, changed))
    }

    /// Entra mode: a new token (or why there is none).
    func publish(_ s: State) {
        pthread_mutex_lock(&lock)
        entraState = s
        pthread_mutex_unlock(&lock)
        announce()
    }

    /// Password mode: Key Vault answered (at start or on SIGHUP; `error` if it did not); announces
    /// a new value, or the failure to connections still waiting for a first one.
    func passwordResolved(error: String?) {
        guard let setting = password, setting.reference != nil else { return }
        guard let now = setting.current else {
            pthread_mutex_lock(&lock)
            passwordError = "upstream password \(setting.reference!) could not be resolved: \(error ?? "no value")"
            pthread_mutex_unlock(&lock)
            announce()
            return
        }
        pthread_mutex_lock(&lock)
        let changed = now != lastPassword
        lastPassword = now
        pthread_mutex_unlock(&lock)
        if changed { announce() }
    }

    private func announce() {
        pthread_mutex_lock(&lock)
        let ws = watchers
        pthread_mutex_unlock(&lock)
        for w in ws { w.loop.execute(w.changed) }
    }
}

/// Why an upstream connection has no credential (never holds the secret itself).
struct UpstreamAuthError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// One loop's side of the credential: connections opened while it is pending wait here.
final class LoopCredential {
    let shared: UpstreamCredential
    private var waiting: [(Result<(bytes: [UInt8], replies: Int), UpstreamAuthError>) -> Void] = []
    /// Entra: the newest token this loop's connections were given (at connect or re-AUTH).
    private var newestToken: Secret?

    init(_ shared: UpstreamCredential) { self.shared = shared }

    /// Gives the handshake now if there is one, else once the credential arrives.
    func handshake(_ done: @escaping (Result<(bytes: [UInt8], replies: Int), UpstreamAuthError>) -> Void) {
        guard let h = shared.handshake() else { waiting.append(done); return }
        noteHandedOut()
        done(h)
    }

    /// On this loop, after `UpstreamCredential` announced a change: waiting connections go on;
    /// returns the AUTH command live connections should send, if a new token came.
    func changed() -> [[UInt8]]? {
        let previous = newestToken
        if let h = shared.handshake() {
            let w = waiting
            waiting.removeAll()
            if !w.isEmpty { noteHandedOut() }
            for done in w { done(h) }
        }
        guard shared.entra, case .ready(let user, let password) = shared.state, password != previous,
              previous != nil else {
            noteHandedOut()
            return nil
        }
        newestToken = password
        return UpstreamCredential.auth(user, password).map { Array($0.utf8) }
    }

    private func noteHandedOut() {
        if shared.entra, case .ready(_, let password) = shared.state, newestToken == nil { newestToken = password }
    }
}
