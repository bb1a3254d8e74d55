import CLibevent
import COpenSSL
import Glibc

/// One connection's TLS, driven by the connection itself rather than by libevent's OpenSSL
/// bufferevent: ciphertext arrives in `cipherIn` (the connection's one readv per wakeup) and
/// leaves from `cipherOut` (its one writev), and OpenSSL works between those buffers and the
/// connection's plaintext `input`/`output` through a BIO that never touches the socket
/// (`tp_tls_pipe` in COpenSSL's shim). So a pipelined batch costs one read and one write system
/// call and no epoll change, as on a plain connection; the handshake, alerts, KeyUpdate and
/// close_notify are OpenSSL's, carried by the same two buffers.
final class TLSChannel {
    let ssl: OpaquePointer
    private let pipe: UnsafeMutablePointer<tp_tls_pipe>
    var cipherIn: OpaquePointer { pipe.pointee.in }
    var cipherOut: OpaquePointer { pipe.pointee.out }
    private(set) var handshakeDone = false

    /// Plaintext taken from `output` per SSL_write: one full record.
    private static let recordSize = 16384
    /// Ciphertext encrypted ahead of the socket at most (the rest of `output` waits as plaintext,
    /// so `output`'s level still says how much the peer has yet to take).
    static let cipherAhead = 65536

    /// What a step of OpenSSL's left to do.
    enum Outcome: Equatable {
        case ok               // progress, or nothing to do until more ciphertext comes
        case ended            // the peer's close_notify, or end of stream
        case failed(String)   // a TLS error (an alert, a bad record, a refused certificate)
    }

    init?(ssl: OpaquePointer, accepting: Bool) {
        self.ssl = ssl
        pipe = .allocate(capacity: 1)
        pipe.initialize(to: tp_tls_pipe(in: evbuffer_new(), out: evbuffer_new(), eof: 0))
        guard pipe.pointee.in != nil, pipe.pointee.out != nil, tp_tls_pipe_attach(ssl, pipe) == 1 else {
            SSL_free(ssl)
            free(buffers: pipe)
            return nil
        }
        if accepting { SSL_set_accept_state(ssl) } else { SSL_set_connect_state(ssl) }
    }

    deinit {
        SSL_free(ssl)          // frees the BIO, which never frees the pipe
        free(buffers: pipe)
    }

    private func free(buffers p: UnsafeMutablePointer<tp_tls_pipe>) {
        if let b = p.pointee.in { evbuffer_free(b) }
        if let b = p.pointee.out { evbuffer_free(b) }
        p.deinitialize(count: 1)
        p.deallocate()
    }

    /// The socket reached end of stream: OpenSSL sees it once `cipherIn` is used up.
    func markEndOfStream() { pipe.pointee.eof = 1 }

    /// Bytes OpenSSL holds or could still decrypt without another read.
    var hasBuffered: Bool { SSL_has_pending(ssl) == 1 || evbuffer_get_length(cipherIn) > 0 }

    /// Moves the handshake on with whatever ciphertext came; its own replies land in `cipherOut`.
    func handshake() -> Outcome {
        ERR_clear_error()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 { handshakeDone = true; return .ok }
        return outcome(rc, duringHandshake: true)
    }

    /// Decrypts every complete record in `cipherIn` onto the end of `input` (a frozen-ended
    /// bufferevent input: unfrozen around the appends, as the plain read path does).
    /// Returns the plaintext bytes added and how the stream stands.
    func decrypt(into input: OpaquePointer) -> (bytes: Int, outcome: Outcome) {
        evbuffer_unfreeze(input, 0)
        defer { evbuffer_freeze(input, 0) }
        var total = 0
        var vec = iovec()
        // Only part of a record left: OpenSSL would just say WANT_READ. At the end of the stream
        // it is asked until it says how the stream ended (close_notify, an alert, a cut record).
        while let room = plaintextRoom() {
            guard evbuffer_reserve_space(input, room, &vec, 1) == 1 else {
                return (total, .failed("out of memory"))
            }
            ERR_clear_error()
            let n = SSL_read(ssl, vec.iov_base, Int32(min(vec.iov_len, Int(Int32.max))))
            if n <= 0 {
                return (total, outcome(n, duringHandshake: false))
            }
            vec.iov_len = Int(n)
            evbuffer_commit_space(input, &vec, 1)
            total += Int(n)
        }
        return (total, .ok)
    }

    /// Room for the next SSL_read, or nil when it would only say WANT_READ. Sized to what can
    /// come out (what OpenSSL holds decrypted, else the next record's length, which bounds its
    /// plaintext): a small request then fits in the space `input` already has, where a full
    /// record's 16 KB would take a new block for each one.
    private func plaintextRoom() -> Int? {
        let pending = Int(SSL_pending(ssl))
        if pending > 0 { return min(pending, TLSChannel.recordSize) }
        if let length = wholeRecordLength() { return max(1, min(length, TLSChannel.recordSize)) }
        return pipe.pointee.eof != 0 ? TLSChannel.recordSize : nil
    }

    /// The length of the record at the front of `cipherIn` if all of it is there: its 5-byte
    /// header (type, version, length) and the length it gives.
    private func wholeRecordLength() -> Int? {
        let have = evbuffer_get_length(cipherIn)
        guard have >= 5 else { return nil }
        var header = (UInt8(0), UInt8(0), UInt8(0), UInt8(0), UInt8(0))
        let copied = withUnsafeMutableBytes(of: &header) { evbuffer_copyout(cipherIn, $0.baseAddress, 5) }
        guard copied == 5 else { return nil }
        let length = Int(header.3) << 8 | Int(header.4)
        return have >= 5 + length ? length : nil
    }

    /// Encrypts from the front of `output` (start-frozen, as a bufferevent's output is) into
    /// `cipherOut` until `output` is empty or `cipherAhead` bytes wait to be written.
    func encrypt(from output: OpaquePointer) -> Outcome {
        evbuffer_unfreeze(output, 1)
        defer { evbuffer_freeze(output, 1) }
        while evbuffer_get_length(cipherOut) < TLSChannel.cipherAhead {
            let left = evbuffer_get_length(output)
            if left == 0 { return .ok }
            // One record's worth made contiguous: replies moved in whole blocks would otherwise
            // each become a record (and a header, a tag) of their own.
            let take = min(left, TLSChannel.recordSize)
            guard let p = evbuffer_pullup(output, take) else { return .failed("out of memory") }
            ERR_clear_error()
            let n = SSL_write(ssl, p, Int32(take))
            if n <= 0 {
                // WANT_READ: a renegotiation waits for the peer; the next read resumes writing.
                return outcome(n, duringHandshake: false)
            }
            evbuffer_drain(output, Int(n))
        }
        return .ok
    }

    /// A close_notify into `cipherOut` (an established session only), for a last write.
    func shutdown() {
        guard handshakeDone else { return }
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    private func outcome(_ rc: Int32, duringHandshake: Bool) -> Outcome {
        let err = SSL_get_error(ssl, rc)
        switch err {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .ok
        case SSL_ERROR_ZERO_RETURN:
            return .ended
        default:
            var codes: [UInt] = []
            while case let code = ERR_get_error(), code != 0 { codes.append(code) }
            if codes.isEmpty && err == SSL_ERROR_SYSCALL && !duringHandshake { return .ended }
            // Only a failed handshake has a certificate verdict worth reporting.
            let fallback = duringHandshake ? "TLS handshake failed: connection closed" : "TLS connection closed"
            return .failed(TLSClient.failure(ssl: duringHandshake ? ssl : nil, errors: codes, fallback: fallback))
        }
    }
}
