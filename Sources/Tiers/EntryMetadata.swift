/// The entry metadata the Cosmos and Blob tiers store beside the value, as name/value strings:
/// Blob sends each as an `x-ms-meta-<name>` header, Cosmos as a string property of the document
/// (next to the seed's `id`, `pk`, `value`, `ttl`). Names are valid C# identifiers (Blob's rule
/// for metadata names) and lower case (Blob returns them lower-cased).
///
///     tp_type  "string" | "list" | "set" | "zset" | "hash" | "stream"   (absent: "string")
///     tp_exp   absolute expiry, decimal Unix milliseconds                (absent: no expiry)
///     tp_enc   "raw" | "gzip": how the stored value is encoded           (absent: "raw")
///              "aes-256-gcm": the stored value is an `EntryCipher` sealed value holding the
///              real type, encoding and value (`tier-encryption-key`); tp_type is then absent
///     tp_db    decimal db index                                          (absent: 0)
///     tp_key   standard base64 (padded) of the original key bytes       (absent: the name is the key)
///
/// Only non-default fields are written, so an entry for a plain db-0 string key looks exactly
/// like one the seed library wrote, and the seed's own items (no `tp_*` at all) read as db-0
/// strings without expiry. `tp_key`/`tp_db` are written whenever the name is not the readable key
/// itself, so a hash-named entry can be checked against the key that was asked for.
/// For Blob, `Content-Encoding: gzip` may stand in for `tp_enc` (either is honoured on read).
/// Sealed entries keep `tp_exp`, `tp_db` and `tp_key` in clear (lookups, purges and expiry need
/// them; the seal authenticates them); readers that predate encryption refuse the unknown
/// `tp_enc` instead of serving ciphertext.
public struct EntryMetadata: Equatable, Sendable {
    public static let typeField = "tp_type"
    public static let expiryField = "tp_exp"
    public static let encodingField = "tp_enc"
    public static let dbField = "tp_db"
    public static let keyField = "tp_key"
    /// The `tp_enc` value of encrypted entries.
    public static let sealedEncoding = "aes-256-gcm"

    public var type: ValueType
    public var expiresAtMillis: Int64?
    public var encoding: ValueEncoding
    public var db: Int
    /// The original key, when the stored name does not spell it (nil: the name is the key).
    public var key: [UInt8]?
    /// The stored value is sealed (`EntryCipher`); `type` and `encoding` are inside it.
    public var sealed: Bool

    public init(type: ValueType = .string, expiresAtMillis: Int64? = nil, encoding: ValueEncoding = .raw,
                db: Int = 0, key: [UInt8]? = nil, sealed: Bool = false) {
        self.type = type
        self.expiresAtMillis = expiresAtMillis
        self.encoding = encoding
        self.db = db
        self.key = key
        self.sealed = sealed
    }

    /// Metadata for storing `entry` under `name` (the `TierNames` name used for `key`); when
    /// `sealed`, type and encoding are left to the sealed value.
    public init(key: TierKey, entry: Entry, name: String, encoding: ValueEncoding = .raw, sealed: Bool = false) {
        let readable = key.db == 0 && Array(name.utf8) == key.bytes
        self.init(type: sealed ? .string : entry.type, expiresAtMillis: entry.expiresAtMillis, encoding: sealed ? .raw : encoding,
                  db: key.db, key: readable ? nil : key.bytes, sealed: sealed)
    }

    /// The fields to write, defaults left out, in a fixed order.
    public var fields: [(name: String, value: String)] {
        var out = [(name: String, value: String)]()
        if type != .string { out.append((Self.typeField, type.rawValue)) }
        if let e = expiresAtMillis { out.append((Self.expiryField, String(e))) }
        if sealed {
            out.append((Self.encodingField, Self.sealedEncoding))
        } else if encoding != .raw {
            out.append((Self.encodingField, encoding.rawValue))
        }
        if db != 0 || key != nil { out.append((Self.dbField, String(db))) }
        if let k = key { out.append((Self.keyField, String(decoding: Self.base64(k), as: UTF8.self))) }
        return out
    }

    /// Reads metadata back; `field` returns a field's value by (lower-case) name, or nil.
    /// Missing fields take the defaults above; malformed ones throw `.corrupt`.
    public static func parse(_ field: (String) -> String?) throws(TierError) -> EntryMetadata {
        var m = EntryMetadata()
        if let t = field(typeField) {
            guard let type = ValueType(rawValue: t) else { throw .corrupt("unknown \(typeField) \"\(t)\"") }
            m.type = type
        }
        if let e = field(expiryField) {
            guard let ms = Int64(e) else { throw .corrupt("\(expiryField) \"\(e)\" is not a number") }
            m.expiresAtMillis = ms
        }
        if let e = field(encodingField), e == sealedEncoding {
            m.sealed = true
        } else if let e = field(encodingField) {
            guard let enc = ValueEncoding(rawValue: e) else { throw .corrupt("unknown \(encodingField) \"\(e)\"") }
            m.encoding = enc
        }
        let d = field(dbField)
        guard let db = db(fromField: d) else { throw .corrupt("\(dbField) \"\(d ?? "")\" is not a number") }
        m.db = db
        if let k = field(keyField) {
            guard let key = decodeBase64(Array(k.utf8)) else { throw .corrupt("\(keyField) is not base64") }
            m.key = key
        }
        return m
    }

    /// The database an entry belongs to by its `tp_db` value (absent: 0); nil when malformed.
    public static func db(fromField value: String?) -> Int? {
        guard let value else { return 0 }
        return Int(value)
    }

    /// True if this metadata, found under the name `TierNames` gives `wanted`, belongs to `wanted`.
    /// False means a hash-name collision (or a foreign object): treat the entry as absent.
    public func belongs(to wanted: TierKey) -> Bool {
        guard db == wanted.db else { return false }
        if let key { return key == wanted.bytes }
        // No stored key: only a readable name (which is the key itself) may omit it.
        return wanted.db == 0
    }

    /// The entry these fields describe, around the decoded value bytes.
    public func entry(value: [UInt8]) -> Entry {
        Entry(value: value, type: type, expiresAtMillis: expiresAtMillis)
    }

    /// Opens a sealed stored value with `cipher` (the identity checked is `wanted`, the key that
    /// was asked for and that `belongs(to:)` accepted) and returns the entry, decompressed.
    func openSealed(_ stored: [UInt8], wanted: TierKey, cipher: EntryCipher?, valueLimit: Int) throws(TierError) -> Entry {
        guard let cipher else { throw EntryCipher.notConfigured }
        let opened = try cipher.open(stored, key: wanted, expiresAtMillis: expiresAtMillis)
        let value = opened.encoding == .gzip ? try Gzip.decompress(opened.storedValue, limit: valueLimit) : opened.storedValue
        return Entry(value: value, type: opened.type, expiresAtMillis: expiresAtMillis)
    }

    // Standard base64 with padding; private so it cannot clash with the HTTP side's helpers.
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func base64(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i < bytes.count {
            let a = bytes[i], b = i + 1 < bytes.count ? bytes[i + 1] : 0, c = i + 2 < bytes.count ? bytes[i + 2] : 0
            let n = UInt32(a) << 16 | UInt32(b) << 8 | UInt32(c)
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(i + 1 < bytes.count ? alphabet[Int(n >> 6 & 63)] : UInt8(ascii: "="))
            out.append(i + 2 < bytes.count ? alphabet[Int(n & 63)] : UInt8(ascii: "="))
            i += 3
        }
        return out
    }

    static func decodeBase64(_ text: [UInt8]) -> [UInt8]? {
        guard text.count % 4 == 0 else { return nil }
        var body = text[...]
        while body.last == UInt8(ascii: "=") { body = body.dropLast() }
        guard text.count - body.count <= 2 else { return nil }
        let mapped = body.map { c -> UInt8 in
            switch c {
            case UInt8(ascii: "+"): return UInt8(ascii: "-")
            case UInt8(ascii: "/"): return UInt8(ascii: "_")
            case UInt8(ascii: "-"), UInt8(ascii: "_"): return UInt8(ascii: "!")  // not standard: reject
            default: return c
            }
        }
        return TierNames.decodeBase64url(mapped)
    }
}
