import RESP

/// When a pinned client's connection stops being request/reply and becomes a byte pipe.
///
/// Redis itself sometimes stops speaking one reply per request on a connection:
/// - `SYNC`/`PSYNC` turn the connection into a replica link. What follows is `+FULLRESYNC …`
///   (PSYNC only), `\n` keepalives while the RDB is prepared, the RDB as `$<len>\r\n<bytes>` with
///   no CRLF after it (or `$EOF:<mark>\r\n…<mark>` when diskless), then the command stream; the
///   client's `REPLCONF ACK`s get no reply. None of it frames as RESP replies.
/// - A reply Redis builds from unchecked text: a Lua script's `{big_number='1\r\n2'}` under RESP3
///   goes out as `(1\r\n2\r\n`, which does not frame either, and Redis keeps the connection open.
///
/// In both cases the proxy can no longer tell where replies end, so it stops trying: from then on
/// the client's connection is a pipe, Redis's bytes go to the client exactly as they come, and the
/// client's requests go to Redis with nothing composed or answered by the proxy (requests are
/// still parsed, as in the other uncounted modes, only to find QUIT and protocol errors for Redis to
/// judge). Only a pinned connection can become a pipe: it is the client's alone.
///
/// Redis may refuse `SYNC`/`PSYNC` (ACL, `NOAUTH`, a transaction, a replica that is not
/// connected to its master yet): it answers one error reply and the connection stays
/// request/reply. So the proxy sends the command counted, reads nothing more of the client,
/// and lets the first byte of the answer decide (`startsStream`).
struct PipeMode {
    /// Replies from the dedicated connection are no longer scanned.
    var on = false
    /// The connection is a replica link (SYNC/PSYNC).
    var replica = false
    /// SYNC/PSYNC was sent and nothing of its answer has arrived yet.
    var awaitingReplication = false

    static let quit: StaticString = "*1\r\n$4\r\nQUIT\r\n"
    static let sync = CommandName("sync")
    static let psync = CommandName("psync")

    /// Commands after which Redis sends a replication stream rather than a reply.
    static func startsReplication(_ name: CommandName) -> Bool { name == sync || name == psync }

    /// Whether the answer to SYNC/PSYNC that begins with `firstByte` is a replication stream
    /// (`\n` keepalives, `+FULLRESYNC`/`+CONTINUE`, `$` the RDB) rather than Redis's refusal
    /// (an error reply, counted like any other).
    static func startsStream(firstByte: UInt8) -> Bool { firstByte != UInt8(ascii: "-") }

    /// Whether a pipe can take over where the reply scanner failed, at the reply numbered
    /// `failedSeq`: only if no handler of the proxy waits for that reply or a later one (a GET's
    /// read-through, whose handler is nil, only ever reads a nil and is given up). Otherwise the
    /// proxy would owe the client a reply it can no longer compose.
    static func canTakeOver(_ pending: ArraySlice<Intercept>, failedSeq: Int, capturing: Bool) -> Bool {
        !capturing && pending.allSatisfy { $0.seq < failedSeq || $0.handler == nil }
    }

    /// The output-buffer limit the proxy enforces on what it holds for this client. A replica
    /// link has none here: its RDB is not output-buffer data in Redis either, and the proxy
    /// stops reading Redis once it holds `proxy-buffer-high-water` for a slow replica, so that
    /// Redis applies its own `client-output-buffer-limit replica` to the stream behind it.
    func outputLimit(_ otherwise: OutputLimit) -> OutputLimit { replica ? OutputLimit() : otherwise }
}
