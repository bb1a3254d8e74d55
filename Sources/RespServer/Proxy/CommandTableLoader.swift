import RESP
import Reactor

/// Fetches the upstream's `COMMAND` reply on a connection of its own, retrying every second
/// until Redis answers, and hands the table to its loop's worker.
final class CommandTableLoader: ConnectionDelegate {
    private unowned let worker: Worker
    private var connection: Connection?
    private var scanner = ReplyScanner()
    private var replies = [ReplyInfo]()
    private var retry: Timer?
    private var expected = 0

    init(worker: Worker) {
        self.worker = worker
        attempt()
    }

    private func attempt() {
        guard let address = worker.upstreamAddress else { scheduleRetry(); return }
        scanner = ReplyScanner()
        let c = Connection(loop: worker.loop, connectingTo: address)
        c.delegate = self
        let handshake = worker.handshakeBytes
        c.output.append(handshake.bytes)
        c.output.append(UpstreamCommands.format(["COMMAND"]))
        expected = handshake.replies + 1
        connection = c
    }

    private func scheduleRetry(millis: Int = 1000) {
        connection?.close()
        connection = nil
        retry = Timer(loop: worker.loop, millis: millis) { [unowned self] in self.attempt() }
    }

    func connectionEstablished(_ connection: Connection) {}
    func connectionDrained(_ connection: Connection) {}

    func connectionReadable(_ c: Connection) {
        // Scan only to learn when the whole reply is in; hiredis parses it then.
        var complete = 0
        var status = ParseStatus.ok
        var end = 0
        var base = 0
        scanner = ReplyScanner()   // rescan from the start: the reply stays in the buffer until complete
        c.input.withSegments { segment in
            replies.removeAll(keepingCapacity: true)
            status = scanner.feed(segment, replies: &replies)
            for r in replies where !r.isPush {
                complete += 1
                if complete == expected - 1 { end = base + r.end }
            }
            base += segment.count
            return status == .ok
        }
        guard status == .ok else { scheduleRetry(); return }
        guard complete >= expected else { return }
        let bytes = c.input.copy(c.input.count - end, offset: end)
        if bytes.starts(with: Array("-NOAUTH".utf8)) {
            // Redis wants a password the proxy does not have: each client must AUTH itself.
            worker.upstreamRequiresClientAuth()
            scheduleRetry(millis: 5000)
            return
        }
        if let table = CommandTable(commandReply: bytes) {
            worker.commandTableLoaded(table)
            c.close()
            connection = nil
        } else {
            Log.warning("Upstream's COMMAND reply could not be read (\(firstBytes(bytes))); retrying")
            scheduleRetry()
        }
    }

    func connectionClosed(_ c: Connection, error: String?) {
        Log.debug("Command table: upstream not reachable (\(error ?? "closed")); retrying")
        scheduleRetry()
    }

    func cancel() {
        retry?.cancel()
        connection?.close()
        connection = nil
    }
}

private func firstBytes(_ b: [UInt8]) -> String {
    String(decoding: b.prefix(80).map { $0 == 13 || $0 == 10 ? 32 : $0 }, as: UTF8.self)
}
