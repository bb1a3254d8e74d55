import Reactor
import Glibc

extension DirectoryTier {
    /// False only when no file of `key` can exist: the tier's `PresenceFilter` (a walk of the
    /// directory at start, and every write begun since) has never seen its name.
    public func mayHold(_ key: TierKey) -> Bool { presence.mayContain(nameHash(key)) }

    /// The hash of `key`'s file name, as `location(of:)` computes it.
    func nameHash(_ key: TierKey) -> UInt64 { Self.fnv1a(TierNames.fileName(key).utf8) }

    /// Fills `filter` with every file under `root`: at once when the directory holds no fan-out
    /// directory (a new tier), else on a thread of its own, so a large tier does not hold up the
    /// start. Until then (or for good, if the walk fails) the filter answers "yes".
    static func startPresenceWalk(root: String, into filter: PresenceFilter) throws(TierError) {
        guard try FileOps.names(in: root).contains(where: DirectoryFiles.isFanOut) else {
            filter.markReady()
            return
        }
        var thread = pthread_t()
        if startThread(&thread, { DirectoryFiles.walkNames(root: root, into: filter) }) { pthread_detach(thread) }
    }
}

extension DirectoryFiles {
    /// Inserts the name hash of every entry file under `root` (dot files are temporary files or
    /// probes, never entries), then marks the filter ready; an I/O error leaves it not ready.
    static func walkNames(root: String, into filter: PresenceFilter) {
        nameCurrentThread("tp-dir-walk")
        do throws(TierError) {
            for top in try FileOps.names(in: root) where isFanOut(top) {
                for sub in try FileOps.names(in: root + "/" + top) where isFanOut(sub) {
                    for name in try FileOps.names(in: root + "/" + top + "/" + sub) where !name.hasPrefix(".") {
                        filter.insert(DirectoryTier.fnv1a(name.utf8))
                    }
                }
            }
            filter.markReady()
        } catch {
            return
        }
    }
}
