import RESP
import Reactor

/// The proxy's own connection to hot, one per loop, for requests no client asked for: the
/// write-behind flusher's reads and the undo of a failed write-through. Requests are pipelined;
/// each batch's replies go to its callback in order. A lost connection answers every waiting
/// batch with an error reply per request, and the next batch reconnects.
final class HotClient: UpstreamLinkDelegate {
    private unowned let worker: Worker
    private var link: UpstreamLink?
    private var framer = ReplyFramer()
    /// Bytes of `link.input` the scanner has seen: the start of a reply still arriving (a large
    /// DUMP spans many reads), which must not be fed to it twice.
    private var scanned = 0
    private var waiting: [(count: Int, done: ([[UInt8]]) -> Void)] = []
    private var head = 0
    private var collected: [[UInt8]] = []

    init(worker: Worker) { self.worker = worker }

    /// Sends `commands` (each a list of arguments) at once; `done` gets one reply per command.
    func send(_ commands: [[[UInt8]]], _ done: @escaping ([[UInt8]]) -> Void) {
        guard !commands.isEmpty else { done([]); return }
        guard let up = connect() else {
            done(commands.map { _ in ReplyParts.errorReply("ERR tierproxy: cannot resolve upstream") })
            return
        }
        for c in commands { up.output.append(ReplyParts.command(c)) }
        waiting.append((commands.count, done))
        up.flush()
    }

    /// Re-authenticates the open connection (if any) with `auth` (a new Entra ID token).
    func reauthenticate(_ auth: [[UInt8]]) {
        guard link != nil else { return }
        send([auth]) { replies in EntraReauth.checkReply(replies.first ?? [], on: "the proxy's own upstream connection") }
    }

    private func connect() -> UpstreamLink? {
        if let link { return link }
        guard let address = worker.upstreamAddress else { return nil }
        framer = ReplyFramer()
        scanned = 0
        let up = UpstreamLink(worker: worker, address: address, delegate: self)
        link = up
        return up
    }

    func linkReadable(_ link: UpstreamLink) {
        let input = link.input
        var ends: [ReplyEnd] = []
        let (status, base) = framer.scan({ input.withSegments(offset: scanned, $0) }, from: scanned, into: &ends)
        guard status == .ok else { failed("unparseable reply from upstream"); return }
        var consumed = 0
        for end in ends.lazy.map(\.end) {
            collected.append(input.copy(end - consumed))
            input.drain(end - consumed)
            consumed = end
            guard head < waiting.count else { failed("reply with no request"); return }
            if collected.count == waiting[head].count {
                let done = waiting[head].done
                let replies = collected
                collected = []
                head += 1
                if head == waiting.count { waiting.removeAll(keepingCapacity: true); head = 0 }
                done(replies)
            }
        }
        if self.link === link { scanned = base - consumed }
    }

    func linkDrained(_ link: UpstreamLink) {}

    func linkFailed(_ link: UpstreamLink, reason: String) { failed(reason) }

    private func failed(_ reason: String) {
        link?.close()
        link = nil
        scanned = 0
        let pending = Array(waiting[head...])
        let partial = collected
        waiting.removeAll()
        head = 0
        collected = []
        let error = ReplyParts.errorReply("ERR tierproxy: \(reason)")
        for (i, w) in pending.enumerated() {
            var replies = i == 0 ? partial : []
            while replies.count < w.count { replies.append(error) }
            w.done(replies)
        }
    }

    func close() {
        link?.close()
        link = nil
    }
}
