import COpenSSL

/// HMAC-SHA256 and SHA-256 through OpenSSL: the primitives behind Cosmos and Blob signatures.
enum Crypto {
    static func hmacSHA256(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var outLen: UInt32 = 0
        key.withUnsafeBufferPointer { k in
            message.withUnsafeBufferPointer { m in
                _ = HMAC(EVP_sha256(), k.baseAddress, Int32(k.count), m.baseAddress, m.count, &out, &outLen)
            }
        }
        return out
    }

    static func sha256(_ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        data.withUnsafeBufferPointer { d in _ = SHA256(d.baseAddress, d.count, &out) }
        return out
    }

    /// `count` cryptographically random bytes (jitter does not need them; ids and nonces do).
    static func randomBytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        _ = RAND_bytes(&out, Int32(count))
        return out
    }
}
