import Tiers

/// The session as the tiering code sees it (`TieredClient`). `db`, `isClosed`, `onSharedRoute`,
/// `watchedKeys`, `foldsInDoubt`, `sendComposed` and `fill` are the session's own members.
extension ClientSession: TieredClient {
    var homeDB: Int { worker.config.upstream.db }

    var hot: HotClient { worker.hot }

    var watchProbe: ProbeConnection { worker.watchProbe }

    var tracksKeys: Bool { tracking.on }
}
