import RESP
import Tiers

/// The session as the tiering code sees it (`TieredClient`). `db`, `isClosed`, `onSharedRoute`,
/// `watchedKeys`, `foldsInDoubt`, `sendComposed` and `fill` are the session's own members.
extension ClientSession: TieredClient {
    var homeDB: Int { worker.config.upstream.db }

    var hot: HotClient { worker.hot }

    var watchProbe: ProbeConnection { worker.watchProbe }

    var tracksKeys: Bool { tracking.on }

    var commandTable: CommandTable { worker.commandTable }

    func requestBytes(_ frame: RequestFrame) -> [UInt8] { client.input.copy(frame.length) }

    /// Whether argument `index` of `frame` is `bytes`; `request`: the frame's bytes (RESP),
    /// copied from the client's input (for an inline request, re-encoded: its arguments are kept).
    func argument(_ frame: RequestFrame, _ index: Int, in request: [UInt8], is bytes: [UInt8]) -> Bool {
        guard index < frame.argc else { return false }
        if let inline = frame.inlineArgs { return inline[index] == bytes }
        let span = worker.spans[frame.spanStart + index]
        return span.count == bytes.count && span.offset + span.count <= request.count
            && request[span.offset..<(span.offset + span.count)].elementsEqual(bytes)
    }
}
