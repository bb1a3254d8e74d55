import RESP
import Tiers

/// What a tiered command needs from the client it runs for, and all the tiering code may see of
/// it: the route its requests take and its place among the replies (`sendComposed`, `fill`), the
/// connection state that decides how a command may run, and the loop's own connections it uses
/// beside the client's. `ClientSession` is the one conformer (ClientSession+TieredClient.swift);
/// the tier access itself is handed to each command explicitly.
protocol TieredClient: AnyObject {
    /// The database the client's commands run in.
    var db: Int { get }
    /// The database the loop's own connections (`hot`, `watchProbe`) rest in between batches.
    var homeDB: Int { get }
    /// The loop's own connection to hot, for requests the client must not see.
    var hot: HotClient { get }
    /// The loop's second watcher, for keeping the client's WATCH exact (`WatchGuard`).
    var watchProbe: ProbeConnection { get }
    /// The client is gone: nothing sent for it will be answered to anyone.
    var isClosed: Bool { get }
    /// Requests sent now go on the loop's shared connection (`KeyBatch` joins only those).
    var onSharedRoute: Bool { get }
    /// The keys the client WATCHes (see `WatchGuard`).
    var watchedKeys: [TierKey] { get }
    /// CLIENT TRACKING is on: the proxy's own reads go beside the client's connection (`OwnRequests`).
    var tracksKeys: Bool { get }
    /// Folded commands still in doubt (`KeyedOp+Fold`): the session holds back requests that
    /// take no key lock while any is.
    var foldsInDoubt: Int { get set }

    /// Sends `commands` on the client's route as one write; `done` gets every reply and the slot
    /// of the last one, which it must fill exactly once.
    func sendComposed(_ commands: [[[UInt8]]], _ done: @escaping (_ replies: [[UInt8]], _ slot: ReplySlot) -> Void)
    /// `sendComposed` for requests already encoded: `bytes` holds `count` of them.
    func sendComposed(encoded bytes: [UInt8], count: Int, _ done: @escaping (_ replies: [[UInt8]], _ slot: ReplySlot) -> Void)
    /// The command table the loop routes by.
    var commandTable: CommandTable { get }
    /// `frame`'s bytes as the client sent them (RESP; the frame is at the front of its input).
    func requestBytes(_ frame: RequestFrame) -> [UInt8]
    /// Whether argument `index` of `frame` is `bytes`; `request`: `requestBytes(frame)`.
    func argument(_ frame: RequestFrame, _ index: Int, in request: [UInt8], is bytes: [UInt8]) -> Bool
    /// Gives `slot` the bytes the client is to see there (empty: nothing).
    func fill(_ slot: ReplySlot, _ reply: [UInt8])
}
