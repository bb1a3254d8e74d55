/// The Cosmos DB item for one entry, compatible with the seed library's `WarmMemory` items:
///
///     {"id": name, "pk": name, "value": "<text>", "ttl": seconds, "tp_exp": "...", ...}
///
/// - `id` is the `TierNames.cosmosID` name; `pk` repeats it (the seed reads with partition key =
///   key), and when the container's partition key path names another top-level property
///   (e.g. `/service`) that property carries the same value, so each key is its own logical partition.
/// - `value` is the value as text when it is valid UTF-8. Other values are stored base64 in
///   `tp_b64` with `value: null` (the seed cannot represent them anyway).
/// - `ttl` (seconds, from the entry's expiry at write time) lets the service delete expired
///   items when the container has TTL on; `tp_exp` keeps the exact expiry. Seed items carry only
///   `ttl`: their expiry is `_ts + ttl`.
/// - `tp_type`/`tp_exp`/`tp_enc`/`tp_db`/`tp_key`: `EntryMetadata`, written only when not default.
/// - Encrypted (`tier-encryption-key`): `value: null`, `tp_b64` holds the `EntryCipher` sealed
///   value (type and value inside), `tp_enc: "aes-256-gcm"`; `id`, `pk`, `ttl`, `tp_exp`, `tp_db`,
///   `tp_key` stay in clear (point reads, purges by db and the service's TTL need them).
enum CosmosDocument {
    /// Cosmos' item limit (2 MB), counted on the serialized JSON.
    static let maxItemBytes = 2 * 1024 * 1024
    static let binaryField = "tp_b64"

    enum Decoded: Equatable {
        case entry(Entry)
        /// The item is past its expiry: absent, and should be deleted.
        case expired
        /// The item belongs to another key (hash-name collision): absent.
        case foreign
    }

    /// The top-level property a partition key path names ("/id" → "id"); nil if nested or empty.
    static func partitionKeyProperty(_ path: String) -> String? {
        guard path.hasPrefix("/") else { return nil }
        let name = String(path.dropFirst())
        return name.isEmpty || name.contains("/") ? nil : name
    }

    static func encode(key: TierKey, entry: Entry, id: String, partitionKeyProperty: String,
                       nowMillis: Int64, cipher: EntryCipher? = nil) throws(TierError) -> [UInt8] {
        let sealed = try cipher.map { c throws(TierError) in
            try c.seal(key: key, expiresAtMillis: entry.expiresAtMillis, type: entry.type, encoding: .raw, storedValue: entry.value)
        }
        var out = [UInt8]()
        out.reserveCapacity(entry.value.count + id.utf8.count * 2 + 128)
        out.append(UInt8(ascii: "{"))
        func field(_ name: String, _ write: (inout [UInt8]) -> Void) {
            if out.count > 1 { out.append(UInt8(ascii: ",")) }
            JSONWriter.writeString(name, to: &out, asciiOnly: false)
            out.append(UInt8(ascii: ":"))
            write(&out)
        }
        func text(_ s: String) -> (inout [UInt8]) -> Void { { JSONWriter.writeString(s, to: &$0, asciiOnly: false) } }
        field("id", text(id))
        field("pk", text(id))
        if partitionKeyProperty != "id" && partitionKeyProperty != "pk" { field(partitionKeyProperty, text(id)) }
        if sealed == nil, let valueText = String(validating: entry.value, as: UTF8.self) {
            field("value", text(valueText))
        } else {
            field("value") { $0 += Array("null".utf8) }
            field(binaryField) { $0.append(UInt8(ascii: "\"")); $0 += Base64.encodeBytes(sealed ?? entry.value); $0.append(UInt8(ascii: "\"")) }
        }
        if let exp = entry.expiresAtMillis {
            let seconds = max(1, (exp - nowMillis + 999) / 1000)
            field("ttl") { $0 += Array(String(seconds).utf8) }
        }
        for (name, value) in EntryMetadata(key: key, entry: entry, name: id, sealed: sealed != nil).fields { field(name, text(value)) }
        out.append(UInt8(ascii: "}"))
        return out
    }

    static func decode(_ body: [UInt8], wanted: TierKey, nowMillis: Int64, valueLimit: Int,
                       cipher: EntryCipher? = nil) throws(TierError) -> Decoded {
        guard let doc = JSONValue.parse(body), case .object = doc else {
            throw .corrupt("Cosmos item is not a JSON object")
        }
        let meta = try EntryMetadata.parse { name in
            switch doc[name] {
            case .string(let s)?: return s
            case .number(let n)?: return n
            default: return nil
            }
        }
        guard meta.belongs(to: wanted) else { return .foreign }
        if meta.sealed {
            guard let b64 = doc[binaryField]?.string, let bytes = Base64.decode(b64) else {
                throw .corrupt("encrypted Cosmos item has no \(binaryField)")
            }
            let entry = try meta.openSealed(bytes, wanted: wanted, cipher: cipher, valueLimit: valueLimit)
            return entry.isExpired(at: nowMillis) ? .expired : .entry(entry)
        }
        var entry: Entry
        switch doc["value"] {
        case .string(let s)?:
            entry = meta.entry(value: Array(s.utf8))
        case .null?, nil:
            guard let b64 = doc[binaryField]?.string, let bytes = Base64.decode(b64) else {
                throw .corrupt("Cosmos item has neither a text value nor \(binaryField)")
            }
            entry = meta.entry(value: bytes)
        default:
            // Another writer stored a JSON number/object/array: keep its JSON text as the value.
            entry = meta.entry(value: doc["value"]!.serialized())
        }
        if meta.encoding == .gzip { entry.value = try Gzip.decompress(entry.value, limit: valueLimit) }
        if entry.expiresAtMillis == nil, let ttl = doc["ttl"]?.int, ttl > 0, let ts = doc["_ts"]?.int {
            entry.expiresAtMillis = (ts + ttl) * 1000
        }
        return entry.isExpired(at: nowMillis) ? .expired : .entry(entry)
    }
}
