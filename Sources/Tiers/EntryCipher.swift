import COpenSSL
import Glibc

/// AES-256-GCM for lower-tier entries (`tier-encryption-key`): seals an entry's type, encoding and
/// stored value into a *sealed value*, bound to the entry's identity so it cannot be moved.
///
/// ## Sealed value, version 1
///
///     offset  size  field
///     0       4     magic: "TPS" + version byte 0x01
///     4       8     key id (`EncryptionKey.id`) of the key that sealed it
///     12      12    nonce, random per entry (RAND_bytes)
///     24      N     ciphertext of: type code (1 byte), encoding code (1 byte), stored value
///     24+N    16    GCM tag
///
/// The additional authenticated data is "tierproxy-entry", the db (8 bytes LE), an expiry flag
/// byte and the expiry (8 bytes LE, Unix ms; 0 without), the key length (4 bytes LE) and the key:
/// an entry copied under another key or db, or given a later expiry, fails authentication.
/// The stored value is gzip already when the tier compressed it: compression comes first.
///
/// Cost: per thread one `EVP_CIPHER_CTX` for sealing and one for opening, made on first use and
/// reused, with the cipher fetched once; no Foundation.
public final class EntryCipher: CustomStringConvertible, @unchecked Sendable {
    public static let magic: [UInt8] = [0x54, 0x50, 0x53, 0x01]
    static let headerSize = 24
    static let tagSize = 16
    static let nonceSize = 12
    /// What a sealed value adds to the stored value: header, type and encoding bytes, tag.
    public static let overhead = headerSize + 2 + tagSize

    /// The largest value whose sealed form, base64 in a JSON document (Cosmos DB), still fits an
    /// item of `itemLimit` bytes, leaving 4 KB for the document's other fields.
    public static func largestValue(sealedInItemOf itemLimit: Int) -> Int { (itemLimit - 4096) / 4 * 3 - overhead }

    public let keys: EncryptionKeys

    public init(keys: EncryptionKeys) { self.keys = keys }

    public var description: String { keys.description }

    /// The error for a sealed entry read by a proxy with no key configured.
    static let notConfigured = TierError.corrupt("entry is encrypted, but no tier-encryption-key is configured to read it")

    /// What `open` gives back.
    public struct Opened: Equatable, Sendable {
        public var type: ValueType
        public var encoding: ValueEncoding
        public var storedValue: [UInt8]
    }

    /// Seals an entry's contents under the current key. Fails only while the key is unresolved
    /// (Key Vault) or if OpenSSL fails.
    public func seal(key: TierKey, expiresAtMillis: Int64?, type: ValueType, encoding: ValueEncoding,
                     storedValue: [UInt8]) throws(TierError) -> [UInt8] {
        let k = try keys.forWriting()
        let nonce = Crypto.randomBytes(Self.nonceSize)
        let aad = Self.associatedData(key, expiresAtMillis)
        let prefix = [type.code, encoding.code]
        let total = Self.headerSize + prefix.count + storedValue.count + Self.tagSize
        var failed = false
        let out = [UInt8](unsafeUninitializedCapacity: total) { buf, count in
            count = total
            let base = buf.baseAddress!
            for (i, b) in (Self.magic + k.id + nonce).enumerated() { base[i] = b }
            let ctx = Self.threadContext(encrypt: true)
            var ok = k.bytes.withUnsafeBufferPointer { kp in
                nonce.withUnsafeBufferPointer { np in EVP_EncryptInit_ex(ctx, nil, nil, kp.baseAddress, np.baseAddress) == 1 }
            }
            var at = Self.headerSize
            ok = ok && Self.update(ctx, encrypt: true, aad, into: nil)
            ok = ok && Self.update(ctx, encrypt: true, prefix[...], into: base + at)
            at += prefix.count
            ok = ok && Self.update(ctx, encrypt: true, storedValue[...], into: base + at)
            at += storedValue.count
            var tail: Int32 = 0
            ok = ok && EVP_EncryptFinal_ex(ctx, base + at, &tail) == 1
            ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, Int32(Self.tagSize), base + at) == 1
            failed = !ok
        }
        if failed { throw .failed("AES-256-GCM encryption failed in OpenSSL") }
        return out
    }

    /// Opens a sealed value stored for `key` with expiry `expiresAtMillis` (both from the entry's
    /// clear part). Throws `.corrupt` when the value is malformed, was sealed with a key that is
    /// not configured, or fails authentication (tampered with, or moved from another key).
    public func open(_ sealed: [UInt8], key: TierKey, expiresAtMillis: Int64?) throws(TierError) -> Opened {
        guard sealed.count >= Self.overhead, Array(sealed.prefix(4)) == Self.magic else {
            throw .corrupt("encrypted entry is malformed (not a version-1 sealed value)")
        }
        let id = sealed[4..<12]
        guard let k = keys.forReading(id: id) else {
            let hex = String(decoding: TierNames.hex(Array(id)), as: UTF8.self)
            throw .corrupt("entry was encrypted with key id \(hex), which is neither tier-encryption-key nor in tier-encryption-old-keys")
        }
        let valueAt = Self.headerSize + 2
        let valueCount = sealed.count - valueAt - Self.tagSize
        var tag = Array(sealed[(sealed.count - Self.tagSize)...])
        let aad = Self.associatedData(key, expiresAtMillis)
        // The type and encoding bytes go to `head`, the value straight into its own array.
        var head: [UInt8] = [0, 0]
        var scratch = [UInt8](repeating: 0, count: 16)
        var ok = true
        let value = [UInt8](unsafeUninitializedCapacity: valueCount) { buf, count in
            count = valueCount
            let ctx = Self.threadContext(encrypt: false)
            ok = k.bytes.withUnsafeBufferPointer { kp in
                sealed.withUnsafeBufferPointer { sp in
                    EVP_DecryptInit_ex(ctx, nil, nil, kp.baseAddress, sp.baseAddress! + 12) == 1
                }
            }
            ok = ok && Self.update(ctx, encrypt: false, aad, into: nil)
            ok = ok && head.withUnsafeMutableBufferPointer { h in
                Self.update(ctx, encrypt: false, sealed[Self.headerSize..<valueAt], into: h.baseAddress!)
            }
            if valueCount > 0 {
                ok = ok && Self.update(ctx, encrypt: false, sealed[valueAt..<(valueAt + valueCount)], into: buf.baseAddress!)
            }
            ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, Int32(Self.tagSize), &tag) == 1
            var tail: Int32 = 0
            // Final writes nothing for GCM; it checks the tag.
            ok = ok && EVP_DecryptFinal_ex(ctx, &scratch, &tail) == 1
        }
        guard ok else {
            throw .corrupt("entry failed authentication (AES-256-GCM tag mismatch: tampered with, or stored under another key, db or expiry)")
        }
        guard let type = ValueType(code: head[0]), let encoding = ValueEncoding(code: head[1]) else {
            throw .corrupt("encrypted entry holds unknown type or encoding codes")
        }
        return Opened(type: type, encoding: encoding, storedValue: value)
    }

    // MARK: - OpenSSL

    /// "tierproxy-entry", db, expiry flag and expiry, key length, key.
    static func associatedData(_ key: TierKey, _ expiresAtMillis: Int64?) -> ArraySlice<UInt8> {
        var aad = Array("tierproxy-entry".utf8)
        aad.reserveCapacity(aad.count + 21 + key.bytes.count)
        func le(_ v: UInt64, _ n: Int) { for i in 0..<n { aad.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
        le(UInt64(bitPattern: Int64(key.db)), 8)
        aad.append(expiresAtMillis == nil ? 0 : 1)
        le(UInt64(bitPattern: expiresAtMillis ?? 0), 8)
        le(UInt64(key.bytes.count), 4)
        aad += key.bytes
        return aad[...]
    }

    /// Feeds `input` (AAD when `into` is nil) through the context, in chunks OpenSSL's int takes.
    private static func update(_ ctx: OpaquePointer, encrypt: Bool, _ input: ArraySlice<UInt8>,
                               into out: UnsafeMutablePointer<UInt8>?) -> Bool {
        input.withUnsafeBufferPointer { p in
            var done = 0
            while done < p.count {
                let n = min(p.count - done, 1 << 30)
                var written: Int32 = 0
                let target = out.map { $0 + done }
                let r = encrypt ? EVP_EncryptUpdate(ctx, target, &written, p.baseAddress! + done, Int32(n))
                                : EVP_DecryptUpdate(ctx, target, &written, p.baseAddress! + done, Int32(n))
                guard r == 1 else { return false }
                done += n
            }
            return true
        }
    }

    /// AES-256-GCM fetched once: with OpenSSL 3, passing `EVP_aes_256_gcm()` to every init
    /// fetches the implementation again each time (a property query under a lock).
    nonisolated(unsafe) private static let gcm: OpaquePointer = EVP_CIPHER_fetch(nil, "AES-256-GCM", nil)!

    /// This thread's context for one direction, set up with the cipher once (later inits only set
    /// key and nonce), freed when the thread exits.
    private static func threadContext(encrypt: Bool) -> OpaquePointer {
        let key = encrypt ? encryptKey : decryptKey
        if let p = pthread_getspecific(key) { return OpaquePointer(p) }
        let ctx = EVP_CIPHER_CTX_new()!
        _ = encrypt ? EVP_EncryptInit_ex(ctx, gcm, nil, nil, nil) : EVP_DecryptInit_ex(ctx, gcm, nil, nil, nil)
        pthread_setspecific(key, UnsafeRawPointer(ctx))
        return ctx
    }

    private static let encryptKey = makeThreadKey()
    private static let decryptKey = makeThreadKey()

    private static func makeThreadKey() -> pthread_key_t {
        var key = pthread_key_t()
        pthread_key_create(&key) { p in if let p { EVP_CIPHER_CTX_free(OpaquePointer(p)) } }
        return key
    }
}
