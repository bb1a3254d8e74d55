import CZlib

/// gzip (RFC 1952) on zlib, for values stored compressed in the cold tier (files, blobs with
/// `Content-Encoding: gzip`). No Foundation: this runs on worker threads per request.
public enum Gzip {
    /// The first three bytes of every gzip member: magic 1f 8b, method 8 (deflate).
    static let magic: [UInt8] = [0x1f, 0x8b, 0x08]

    /// True if `bytes` start like a gzip member. A cheap sniff, not a validation.
    public static func isGzip(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 3 && bytes[0] == magic[0] && bytes[1] == magic[1] && bytes[2] == magic[2]
    }

    /// Compresses `bytes` into one gzip member (level 6, zlib's default trade-off).
    public static func compress(_ bytes: [UInt8]) -> [UInt8] {
        var stream = z_stream()
        // windowBits 15 + 16 asks zlib for a gzip header and trailer instead of zlib framing.
        let rc = deflateInit2_(&stream, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
                               zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        // Only a memory allocation failure gets here; there is nothing sensible to return.
        precondition(rc == Z_OK, "deflateInit2 failed: \(rc)")
        defer { deflateEnd(&stream) }
        // deflateBound is the worst case for one deflate(Z_FINISH) call, plus the gzip framing.
        let bound = Int(deflateBound(&stream, uLong(bytes.count))) + 18
        var out = [UInt8](repeating: 0, count: bound)
        var produced = 0
        bytes.withUnsafeBufferPointer { input in
            out.withUnsafeMutableBufferPointer { output in
                stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
                stream.avail_in = uInt(input.count)
                stream.next_out = output.baseAddress
                stream.avail_out = uInt(output.count)
                let r = deflate(&stream, Z_FINISH)
                precondition(r == Z_STREAM_END, "deflate with a deflateBound buffer did not finish: \(r)")
                produced = output.count - Int(stream.avail_out)
            }
        }
        out.removeSubrange(produced...)
        return out
    }

    /// Decompresses one or more concatenated gzip members. Throws `.tooLarge(limit:)` as soon as the
    /// output would pass `limit` bytes (so a small "gzip bomb" cannot exhaust memory), and
    /// `.corrupt` for anything that is not complete, valid gzip.
    public static func decompress(_ bytes: [UInt8], limit: Int) throws(TierError) -> [UInt8] {
        guard isGzip(bytes) else { throw .corrupt("not gzip data") }
        var stream = z_stream()
        guard inflateInit2_(&stream, 15 + 16, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw .failed("inflateInit2 failed (out of memory?)")
        }
        defer { inflateEnd(&stream) }

        // Start from a guess (values usually compress 2-10x) but never allocate past the limit + 1.
        var out = [UInt8](repeating: 0, count: min(max(bytes.count * 4, 4096), limit + 1))
        var produced = 0
        var failure: TierError?
        bytes.withUnsafeBufferPointer { input in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
            stream.avail_in = uInt(input.count)
            while failure == nil {
                if produced == out.count {
                    if out.count > limit { failure = .tooLarge(limit: limit); return }
                    out.append(contentsOf: repeatElement(0, count: min(out.count, limit + 1 - out.count)))
                }
                let room = out.count - produced
                let r: Int32 = out.withUnsafeMutableBufferPointer { output in
                    stream.next_out = output.baseAddress! + produced
                    stream.avail_out = uInt(room)
                    return inflate(&stream, Z_NO_FLUSH)
                }
                produced += room - Int(stream.avail_out)
                if produced > limit { failure = .tooLarge(limit: limit); return }
                switch r {
                case Z_STREAM_END:
                    let rest = Int(stream.avail_in)
                    if rest == 0 { return }
                    // Another member may follow (gzip allows concatenation); anything else is damage.
                    let at = input.count - rest
                    guard rest >= 3, input[at] == magic[0], input[at + 1] == magic[1], input[at + 2] == magic[2] else {
                        failure = .corrupt("trailing bytes after gzip data"); return
                    }
                    inflateReset(&stream)
                case Z_OK:
                    continue
                case Z_BUF_ERROR:
                    // No progress possible: with output room left, the input ended mid-stream.
                    if stream.avail_out > 0 { failure = .corrupt("truncated gzip data"); return }
                default:
                    let msg = stream.msg.map { String(cString: $0) } ?? "code \(r)"
                    failure = .corrupt("invalid gzip data: \(msg)"); return
                }
            }
        }
        if let failure { throw failure }
        out.removeSubrange(produced...)
        return out
    }
}
