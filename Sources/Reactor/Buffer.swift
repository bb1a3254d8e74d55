import CLibevent
import Glibc

/// A view of a libevent `evbuffer`: a chain of byte blocks that moves between connections
/// without copying. Reading code gets contiguous segments from `withSegments` and never
/// asks for the whole buffer in one piece.
public struct Buffer {
    let raw: OpaquePointer

    init(_ raw: OpaquePointer) { self.raw = raw }

    /// A free-standing buffer; call `free()` when done with it.
    public static func make() -> Buffer { Buffer(evbuffer_new()!) }
    public func free() { evbuffer_free(raw) }

    public var count: Int { evbuffer_get_length(raw) }
    public var isEmpty: Bool { evbuffer_get_length(raw) == 0 }

    /// Calls `body` with consecutive contiguous segments of the first `limit` bytes (all if nil),
    /// starting `offset` bytes in, until it returns false. No bytes are copied.
    public func withSegments(offset: Int = 0, limit: Int? = nil,
                             _ body: (UnsafeRawBufferPointer) -> Bool) {
        let total = count
        guard offset >= 0, offset < total else { return }
        var remaining = min(limit ?? Int.max, total - offset)
        var pos = evbuffer_ptr()
        var havePos = false
        if offset > 0 {
            guard evbuffer_ptr_set(raw, &pos, offset, EVBUFFER_PTR_SET) == 0 else { return }
            havePos = true
        }
        // Sixteen iovecs on the stack; a longer chain is walked in rounds of sixteen.
        var vecs = (iovec(), iovec(), iovec(), iovec(), iovec(), iovec(), iovec(), iovec(),
                    iovec(), iovec(), iovec(), iovec(), iovec(), iovec(), iovec(), iovec())
        withUnsafeMutablePointer(to: &pos) { p in
            withUnsafeMutableBytes(of: &vecs) { vbytes in
                let v = vbytes.baseAddress!.assumingMemoryBound(to: iovec.self)
                var walked = 0
                while remaining > 0 {
                    let needed = Int(evbuffer_peek(raw, remaining, havePos ? p : nil, v, 16))
                    var seen = 0
                    for i in 0..<min(needed, 16) where seen < remaining {
                        let len = min(v[i].iov_len, remaining - seen)
                        if len == 0 { continue }
                        if !body(UnsafeRawBufferPointer(start: v[i].iov_base, count: len)) { return }
                        seen += len
                    }
                    if seen == 0 { return }
                    remaining -= seen
                    walked += seen
                    if remaining > 0 {
                        if havePos {
                            evbuffer_ptr_set(raw, p, seen, EVBUFFER_PTR_ADD)
                        } else {
                            evbuffer_ptr_set(raw, p, offset + walked, EVBUFFER_PTR_SET)
                            havePos = true
                        }
                    }
                }
            }
        }
    }

    /// Makes the first `n` bytes contiguous (copying only if they span blocks) and returns them.
    public func pullup(_ n: Int) -> UnsafeRawBufferPointer {
        let p = evbuffer_pullup(raw, n)
        return UnsafeRawBufferPointer(start: p, count: p == nil ? 0 : n)
    }

    /// Copies out the first `n` bytes without removing them.
    public func copy(_ n: Int, offset: Int = 0) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(n)
        withSegments(offset: offset, limit: n) { seg in
            out.append(contentsOf: seg)
            return true
        }
        return out
    }

    /// Removes the first `n` bytes.
    public func drain(_ n: Int) { evbuffer_drain(raw, n) }

    /// Moves the first `n` bytes to the end of `other`; whole blocks move without copying.
    @discardableResult
    public func move(_ n: Int, to other: Buffer) -> Int {
        if n >= count { return evbuffer_add_buffer(other.raw, raw) == 0 ? n : 0 }
        return Int(evbuffer_remove_buffer(raw, other.raw, n))
    }

    /// Moves everything to the end of `other`.
    public func moveAll(to other: Buffer) { evbuffer_add_buffer(other.raw, raw) }

    public func append(_ bytes: UnsafeRawBufferPointer) {
        if let base = bytes.baseAddress { evbuffer_add(raw, base, bytes.count) }
    }

    public func append(_ bytes: [UInt8]) { bytes.withUnsafeBytes { append($0) } }

    /// Puts `bytes` in front of what the buffer holds.
    public func prepend(_ bytes: [UInt8]) { bytes.withUnsafeBytes { _ = evbuffer_prepend(raw, $0.baseAddress, $0.count) } }

    public func append(_ text: String) {
        var t = text
        t.withUTF8 { u in evbuffer_add(raw, u.baseAddress, u.count) }
    }

    public func append(_ text: StaticString) {
        evbuffer_add(raw, text.utf8Start, text.utf8CodeUnitCount)
    }

    /// Reads from `fd` into the buffer (for non-socket descriptors); returns bytes read, 0 on EOF, -1 on error.
    public func read(from fd: Int32, upTo max: Int) -> Int { Int(evbuffer_read(raw, fd, Int32(max))) }
}
