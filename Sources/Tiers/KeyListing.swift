/// One key a lower tier holds, as its listing tells it (SCAN, KEYS, DBSIZE through the proxy):
/// the key, its type when the tier stores it in clear, and its expiry. The value is not read.
public struct ListedKey: Equatable, Sendable {
    public var key: TierKey
    /// Nil when the entry is sealed (`tier-encryption-key`): the type is inside the seal, and a
    /// caller that filters by type reads the entry.
    public var type: ValueType?
    public var expiresAtMillis: Int64?

    public init(key: TierKey, type: ValueType?, expiresAtMillis: Int64?) {
        self.key = key
        self.type = type
        self.expiresAtMillis = expiresAtMillis
    }

    public func isExpired(at nowMillis: Int64) -> Bool { expiresAtMillis.map { $0 <= nowMillis } ?? false }
}

/// One page of a tier's listing of one database, and where the next page starts (nil: this
/// was the last). The continuation is the backend's own position (SQLite: the last key; the
/// directory tier: the last file; Blob: the NextMarker; Cosmos: the continuation token): keys
/// written or deleted behind it do not move what follows, so a walk returns every key that
/// stayed in the tier throughout it.
public struct KeyPage: Equatable, Sendable {
    public var keys: [ListedKey]
    public var next: String?

    public init(keys: [ListedKey], next: String?) {
        self.keys = keys
        self.next = next
    }
}

extension EntryMetadata {
    /// The key an entry stored under `name` (a Cosmos id or blob name) stands for, with its type
    /// and expiry: nil when it is not a tierproxy entry of database `db`.
    static func listed(name: String, db: Int, _ field: (String) -> String?) -> ListedKey? {
        guard let meta = try? EntryMetadata.parse(field), meta.db == db else { return nil }
        let bytes: [UInt8]
        if let key = meta.key {
            bytes = key
        } else {
            // No stored key: only a readable db-0 name, which is the key itself, may omit it.
            guard db == 0, !name.hasPrefix(TierNames.reservedPrefix) else { return nil }
            bytes = Array(name.utf8)
        }
        return ListedKey(key: TierKey(db: db, bytes), type: meta.sealed ? nil : meta.type, expiresAtMillis: meta.expiresAtMillis)
    }
}

extension TierNames {
    /// The bytes `hex` spelled (lower or upper case); nil for anything else.
    static func unhex(_ text: [UInt8]) -> [UInt8]? {
        guard text.count % 2 == 0 else { return nil }
        func digit(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        var out = [UInt8]()
        out.reserveCapacity(text.count / 2)
        var i = 0
        while i < text.count {
            guard let hi = digit(text[i]), let lo = digit(text[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}
