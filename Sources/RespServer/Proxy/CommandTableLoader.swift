import RESP
import Reactor

/// Fetches the upstream's `COMMAND` reply on a link of its own, retrying every second until
/// Redis answers, and hands the table to its loop's worker.
final class CommandTableLoader: UpstreamLinkDelegate {
    private unowned let worker: Worker
    private var link: UpstreamLink?
    private var retry: Timer?

    init(worker: Worker) {
        self.worker = worker
        attempt()
    }

    private func attempt() {
        guard let address = worker.upstreamAddress else { scheduleRetry(); return }
        let l = UpstreamLink(worker: worker, address: address, delegate: self)
        l.output.append(UpstreamCommands.format(["COMMAND"]))
        l.flush()
        link = l
    }

    /// Could not get the table now: clients waiting for it go on without it meanwhile.
    private func scheduleRetry(millis: Int = 1000) {
        worker.commandTableSettled()
        link?.close()
        link = nil
        retry = Timer(loop: worker.loop, millis: millis) { [unowned self] in self.attempt() }
    }

    func linkDrained(_ link: UpstreamLink) {}

    func linkFailed(_ link: UpstreamLink, reason: String) {
        Log.debug("Command table: \(reason); retrying")
        scheduleRetry()
    }

    /// The link has already taken the handshake's replies: the input holds COMMAND's reply.
    func linkReadable(_ l: UpstreamLink) {
        // Scan only to learn when the whole reply is in (rescanning: it stays in the buffer until
        // then); hiredis parses it.
        var framer = ReplyFramer()
        var ends: [ReplyEnd] = []
        let (status, _) = framer.scan({ l.input.withSegments($0) }, into: &ends, until: 1)
        guard status == .ok else { scheduleRetry(); return }
        guard !ends.isEmpty else { return }
        let bytes = l.input.copy(l.input.count)
        if bytes.starts(with: Array("-NOAUTH".utf8)) {
            // Redis wants a password the proxy does not have: each client must AUTH itself.
            worker.upstreamRequiresClientAuth()
            scheduleRetry(millis: 5000)
            return
        }
        if let table = CommandTable(commandReply: bytes) {
            worker.commandTableLoaded(table)
            l.close()
            link = nil
        } else {
            Log.warning("Upstream's COMMAND reply could not be read (\(firstBytes(bytes))); retrying")
            scheduleRetry()
        }
    }

    func cancel() {
        retry?.cancel()
        link?.close()
        link = nil
    }
}

private func firstBytes(_ b: [UInt8]) -> String {
    String(decoding: b.prefix(80).map { $0 == 13 || $0 == 10 ? 32 : $0 }, as: UTF8.self)
}
