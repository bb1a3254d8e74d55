import Glibc

/// One AES-256 key of `tier-encryption-key` / `tier-encryption-old-keys`, with its id.
/// Never prints itself: `description` shows only the id.
public struct EncryptionKey: CustomStringConvertible, Sendable {
    public static let size = 32
    public static let idSize = 8
    let bytes: [UInt8]
    /// The first 8 bytes of SHA-256("tierproxy-key-id" ‖ key): stored beside each ciphertext, so a
    /// reader knows which key sealed it without trying them all. Reveals nothing about the key.
    public let id: [UInt8]

    /// Parses 32 bytes in base64. `what` names the setting in the error (never the value).
    public init(base64 text: String, what: String) throws(TierError) {
        guard let raw = Base64.decode(text) else {
            throw .failed("\(what) is not base64 (expected 32 random bytes in base64, e.g. from `openssl rand -base64 32`)")
        }
        guard raw.count == Self.size else {
            throw .failed("\(what) decodes to \(raw.count) bytes; AES-256 needs exactly 32 (`openssl rand -base64 32`)")
        }
        bytes = raw
        id = Array(Crypto.sha256(Array("tierproxy-key-id".utf8) + raw).prefix(Self.idSize))
    }

    /// The id as 16 hex digits, for logs and error replies.
    public var idHex: String { String(decoding: TierNames.hex(id), as: UTF8.self) }
    public var description: String { "key id \(idHex)" }
}

/// The configured encryption keys: the current one (new writes) and old ones (reads only, after a
/// rotation). Each is a literal or a `keyvault://` reference (a `SecretSetting`, resolved with the
/// tiers' other secrets at start and on SIGHUP); `reload()` re-reads the settings into keys.
/// Shared by every loop and worker thread, so the parsed keys sit behind a lock.
public final class EncryptionKeys: CustomStringConvertible, @unchecked Sendable {
    public let currentSetting: SecretSetting
    public let oldSettings: [SecretSetting]
    private var current: EncryptionKey?
    private var old: [EncryptionKey] = []
    /// Current keys replaced by a SIGHUP reload (Key Vault rotation): still read until restart.
    private var retired: [EncryptionKey] = []
    private var lock = pthread_mutex_t()

    /// Literal keys are checked here (a bad one fails at start); references wait for `reload()`.
    public init(current: String, old: [String]) throws(TierError) {
        currentSetting = SecretSetting(current)
        oldSettings = old.map(SecretSetting.init)
        pthread_mutex_init(&lock, nil)
        try reload()
    }

    deinit { pthread_mutex_destroy(&lock) }

    /// Every setting, for the Key Vault resolver.
    public var settings: [SecretSetting] { [currentSetting] + oldSettings }

    /// Parses the settings' current values into keys. A malformed value throws and leaves the
    /// previous keys in place (so a bad rotation on SIGHUP keeps serving); an unresolved
    /// reference stays without a key until it resolves. A current key that changed (a Key Vault
    /// rotation picked up on SIGHUP) stays readable until restart: list it in old keys by then.
    public func reload() throws(TierError) {
        let parsed = try Self.parse(currentSetting, "tier-encryption-key")
        var olds = [EncryptionKey]()
        for (i, s) in oldSettings.enumerated() {
            if let k = try Self.parse(s, "tier-encryption-old-keys entry \(i + 1)") { olds.append(k) }
        }
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        if let previous = current, previous.id != parsed?.id, !retired.contains(where: { $0.id == previous.id }) {
            retired.append(previous)
        }
        current = parsed
        old = olds
    }

    private static func parse(_ setting: SecretSetting, _ what: String) throws(TierError) -> EncryptionKey? {
        guard let value = setting.current else { return nil }
        let name = setting.reference.map { "\(what) (\($0))" } ?? what
        return try EncryptionKey(base64: value.reveal, what: name)
    }

    /// The key new entries are sealed with; fails while its Key Vault reference is unresolved,
    /// so nothing is ever written in clear by mistake.
    func forWriting() throws(TierError) -> EncryptionKey {
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        guard let current else {
            throw .unavailable("tier-encryption-key \(currentSetting.reference.map { "\($0) " } ?? "")is not resolved yet: nothing is written unencrypted")
        }
        return current
    }

    /// The configured key (current or old) with this id, if any.
    func forReading(id: ArraySlice<UInt8>) -> EncryptionKey? {
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        if let current, current.id[...] == id { return current }
        return old.first { $0.id[...] == id } ?? retired.first { $0.id[...] == id }
    }

    /// INFO's fields: the cipher, the current key's id ("unresolved" until Key Vault answered)
    /// and how many old keys are configured.
    public var infoFields: [(String, String)] {
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        return [("tier_encryption", "aes-256-gcm"), ("tier_encryption_key_id", current?.idHex ?? "unresolved"),
                ("tier_encryption_old_keys", "\(oldSettings.count)")]
    }

    /// The ids in use, e.g. "current key id 1f2e… , 1 old key" — never a key.
    public var description: String {
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        let now = current.map { "key id \($0.idHex)" } ?? "key \(currentSetting) (unresolved)"
        return "AES-256-GCM, \(now)" + (oldSettings.isEmpty ? "" : ", \(oldSettings.count) old key(s) for reading")
    }
}
