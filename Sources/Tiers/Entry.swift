/// The Redis type of a stored value. Non-string types will be stored as `DUMP` payloads.
public enum ValueType: String, Sendable {
    case string, list, set, zset, hash, stream
}

/// How the value bytes are stored in a tier. Callers always see and give the decoded value;
/// a tier that compresses records it here.
public enum ValueEncoding: String, Sendable {
    case raw, gzip
}

/// One stored value with its metadata: the single envelope every lower tier stores.
/// Stored as an `EntryEnvelope` (SQLite, directory) or as a value plus `EntryMetadata` fields
/// (Cosmos document properties, blob `x-ms-meta-*`); both formats are documented in those files.
public struct Entry: Equatable, Sendable {
    /// The value's bytes, decoded (never gzip here).
    public var value: [UInt8]
    public var type: ValueType
    /// Absolute expiry, Unix milliseconds; nil = no expiry.
    public var expiresAtMillis: Int64?

    public init(value: [UInt8], type: ValueType = .string, expiresAtMillis: Int64? = nil) {
        self.value = value
        self.type = type
        self.expiresAtMillis = expiresAtMillis
    }

    /// True if the entry has expired at `nowMillis`.
    public func isExpired(at nowMillis: Int64) -> Bool {
        if let e = expiresAtMillis { return e <= nowMillis }
        return false
    }
}
