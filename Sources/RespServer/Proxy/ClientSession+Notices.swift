import RESP
import Tiers

/// What the session notices of the requests it sends (scripts loaded, who the client is, its
/// WATCHed keys, its transaction, modes in which replies stop being one per request), and how
/// it reads their arguments from the client's input without copying the rest.
extension ClientSession {
    /// What the session keeps of a request it sends: scripts and functions loaded, who the
    /// client authenticated as, its WATCHed keys, an uncounted QUIT (Redis answers it, or under
    /// CLIENT REPLY OFF does not, and decides what follows; when it closes, so do we).
    func noteSent(_ frame: RequestFrame, at offset: Int) {
        let name = frame.name
        if name == Commands.script { noticeScriptLoad(frame, at: offset) }
        if name == Commands.function { noticeFunctionChange(frame, at: offset) }
        if (name == Commands.auth || name == Commands.hello) && worker.proxyAuth == nil { authenticatedItself = true }
        if worker.proxyAuth == nil && (name == Commands.auth || (name == Commands.hello && (2..<max(frame.argc, 2)).contains(where: {
            argument(frame, $0, at: offset).lowercased() == "auth" }))) { ownUser = true }
        if name == Commands.watch && !inTransaction && worker.tierAccess != nil {
            watchedKeys += (1..<max(frame.argc, 1)).map { TierKey(db: db, argumentBytes(frame, $0, at: offset)) }
        }
        if name == Commands.quit { quitting = true }
    }

    /// The client's own transaction: inside it Redis queues commands, so the proxy tiers none.
    func noticeTransaction(_ name: CommandName) {
        if name == Commands.multi { inTransaction = true }
        else if name == Commands.exec || name == Commands.discard || name == Commands.reset {
            if name == Commands.reset { tracking.reset() }
            inTransaction = false
            transactionWrites = []
            watchedKeys = []
        } else if name == Commands.unwatch {
            watchedKeys = []
        }
    }

    /// Commands after which replies stop being one per request.
    func notice(_ frame: RequestFrame, at offset: Int) {
        let name = frame.name
        if Commands.subscribeFamily.contains(name) {
            // Subscribing answers per channel (or with pushes), not once per request.
            sequenced = false
            subscribed = true
        } else if Commands.unsubscribeFamily.contains(name) {
            sequenced = false
        } else if name == Commands.monitor {
            sequenced = false
            monitoring = true
        } else if name == Commands.client, frame.argc >= 3 {
            switch argument(frame, 1, at: offset).lowercased() {
            case "reply": sequenced = false
            case "tracking": tracking.requested(mode: argument(frame, 2, at: offset))
            default: break
            }
        }
    }

    /// Every argument of `frame` (which starts `offset` bytes into the client input), whole.
    func arguments(_ frame: RequestFrame, at offset: Int) -> [[UInt8]] {
        if let inline = frame.inlineArgs { return inline }
        return (0..<frame.argc).map { i in
            let span = worker.spans[frame.spanStart + i]
            return client.input.copy(span.count, offset: offset + span.offset)
        }
    }

    /// One argument of `frame` (which starts `offset` bytes into the client input), whole.
    func argumentBytes(_ frame: RequestFrame, _ index: Int, at offset: Int) -> [UInt8] {
        if let inline = frame.inlineArgs { return inline[index] }
        let span = worker.spans[frame.spanStart + index]
        return client.input.copy(span.count, offset: offset + span.offset)
    }

    /// A small argument of `frame` (which starts `offset` bytes into the client input), as text.
    func argument(_ frame: RequestFrame, _ index: Int, at offset: Int) -> String {
        if let inline = frame.inlineArgs {
            return index < inline.count ? String(decoding: inline[index], as: UTF8.self) : ""
        }
        let span = worker.spans[frame.spanStart + index]
        return String(decoding: client.input.copy(min(span.count, 64), offset: offset + span.offset), as: UTF8.self)
    }
}
