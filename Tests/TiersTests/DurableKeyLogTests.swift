import Glibc
import Reactor
import Testing
@testable import Tiers

/// The key log on real files: durability, replay, the pending set, compaction, group commit.
@Suite struct DurableKeyLogTests {
    @Test func aMarkCompletesOnlyOnceItsRecordIsSyncedToDisk() throws {
        let dir = try TempDir()
        let path = dir.path + "/keys.log"
        let log = try KeyLog(path: path)
        defer { log.close() }
        let harness = LoopHarness()
        let key = Durable.key(1)

        log.suspendWriter()
        let box = Completion<Result<Void, TierError>>()
        harness.loop.execute { log.markDirty(key, on: harness.loop) { box.fulfil($0, onLoop: harness.loop.isRunning) } }
        #expect(box.wait(seconds: 0.2) == nil, "completed before the writer ran")
        #expect(try Durable.recordsOnDisk(path).isEmpty)
        #expect(log.isPendingDelete(key) == false && log.pendingItem(key)?.op == .dirty, "the index sees the mark at once")
        let syncsBefore = log.stats.syncs

        log.resumeWriter()
        try #require(box.wait(seconds: 10)).get()
        #expect(log.stats.syncs == syncsBefore + 1)
        #expect(try Durable.recordsOnDisk(path).map(\.key) == [key])
    }

    @Test func underEverysecAMarkCompletesAtOnceAndItsRecordFollowsWithAtMostOneSyncASecond() throws {
        let dir = try TempDir()
        let path = dir.path + "/keys.log"
        var options = KeyLog.Options()
        options.sync = .everysec
        let log = try KeyLog(path: path, options: options)
        let harness = LoopHarness()

        log.suspendWriter()
        let box = Completion<Int>()
        harness.loop.execute {
            var completed = 0
            for i in 0..<100 { log.markDirty(Durable.key(i), on: harness.loop) { if case .success = $0 { completed += 1 } } }
            box.fulfil(completed, onLoop: harness.loop.isRunning)
        }
        #expect(box.wait(seconds: 10) == 100, "every mark completed before its call returned, with the writer held")
        #expect(try Durable.recordsOnDisk(path).isEmpty)
        #expect(log.stats.appends - log.stats.written == 100, "queued, not yet written")

        log.resumeWriter()
        let deadline = wallClockMillis() + 10_000
        while log.stats.written < 100 && wallClockMillis() < deadline { usleep(1000) }
        #expect(try Durable.recordsOnDisk(path).count == 100, "the loop pass's records reached the file together")
        #expect(log.stats.syncs <= 1, "synced at most once in its first second")
        log.close()
        #expect(log.stats.syncs >= 1, "closing syncs what was written")
        let reopened = try KeyLog(path: path)
        #expect(reopened.pendingItems.count == 100)
        reopened.close()
    }

    @Test func aTornTailIsIgnoredAndCutAndEarlierRecordsSurvive() throws {
        let dir = try TempDir()
        let path = dir.path + "/keys.log"
        let harness = LoopHarness()
        var log = try KeyLog(path: path)
        for i in 0..<10 { try Durable.mark(log, .dirty, Durable.key(i), on: harness).get() }
        log.close()

        // A crash in the middle of the last record's write.
        let full = Durable.fileSize(path)
        Durable.truncateFile(path, to: full - 5)
        log = try KeyLog(path: path)
        #expect(log.recovery.records == 9)
        #expect(log.recovery.tornBytes > 0)
        #expect(Set(log.pendingItems.map(\.key)) == Set((0..<9).map { Durable.key($0) }))
        // Appends continue after the last good record, so the next replay sees them.
        try Durable.mark(log, .delete, Durable.key(42), on: harness).get()
        log.close()

        // Garbage after the tail, and a damaged CRC in the last record, are both a torn tail.
        let fd = open(path, O_WRONLY | O_APPEND)
        var junk: [UInt8] = [0x20, 0, 0, 0, 1, 2, 3]
        #expect(write(fd, &junk, junk.count) == junk.count)
        close(fd)
        log = try KeyLog(path: path)
        #expect(log.recovery.records == 10 && log.recovery.tornBytes == junk.count)
        #expect(log.isPendingDelete(Durable.key(42)))
        log.close()

        var bytes = try #require(try FileOps.readFile(path))
        bytes[bytes.count - 1] ^= 0xff
        try FileOps.writeAtomically(path, bytes, sync: .none)
        log = try KeyLog(path: path)
        defer { log.close() }
        #expect(log.recovery.records == 9)
        #expect(!log.isPendingDelete(Durable.key(42)))
    }

    @Test func replayAfterRestartKeepsTheLatestOpPerKey() throws {
        let dir = try TempDir()
        let path = dir.path + "/keys.log"
        let harness = LoopHarness()
        var log = try KeyLog(path: path)
        let (a, b, c, d) = (Durable.key(1), Durable.key(2), Durable.key(3), Durable.key(4))
        let aInDb1 = Durable.key(1, db: 1)
        for (op, key) in [(KeyLog.Op.dirty, a), (.dirty, b), (.delete, a), (.dirty, c), (.delete, d), (.dirty, d), (.dirty, aInDb1)] {
            try Durable.mark(log, op, key, on: harness).get()
        }
        let taken = log.takeBatch(max: 10).first { $0.key == c }
        #expect(log.complete(c, sequence: try #require(taken).sequence))
        let before = log.pendingItems
        log.close()

        log = try KeyLog(path: path)
        defer { log.close() }
        #expect(log.recovery.pending == 4)
        #expect(log.pendingItems == before)
        #expect(Dictionary(uniqueKeysWithValues: log.pendingItems.map { ($0.key, $0.op) })
                == [a: .delete, b: .dirty, d: .dirty, aInDb1: .dirty])
        #expect(log.isPendingDelete(a) && !log.isPendingDelete(aInDb1) && !log.isPendingDelete(d))
        #expect(log.backlog.dirty == 3 && log.backlog.deletes == 1)
        // Sequences continue past everything replayed.
        try Durable.mark(log, .dirty, c, on: harness).get()
        #expect(try #require(log.pendingItem(c)).sequence > before.map(\.sequence).max()!)
    }

    @Test func aDeleteAfterADirtyIsOneDeleteAndReadsAbsentUntilCompleted() throws {
        let dir = try TempDir()
        let log = try KeyLog(path: dir.path + "/keys.log")
        defer { log.close() }
        let harness = LoopHarness()
        let k = Durable.key(7)
        try Durable.mark(log, .dirty, k, on: harness).get()
        #expect(!log.isPendingDelete(k))
        try Durable.mark(log, .delete, k, on: harness).get()
        #expect(log.isPendingDelete(k))

        let batch = log.takeBatch(max: 10)
        #expect(batch.map(\.op) == [.delete] && batch.map(\.key) == [k])
        #expect(log.isPendingDelete(k), "absent until the delete has landed below")
        #expect(log.complete(k, sequence: batch[0].sequence))
        #expect(!log.isPendingDelete(k))

        // And the other way round: a write after a pending delete makes the key present again.
        try Durable.mark(log, .delete, k, on: harness).get()
        try Durable.mark(log, .dirty, k, on: harness).get()
        #expect(!log.isPendingDelete(k) && log.takeBatch(max: 10).map(\.op) == [.dirty])
    }

    @Test func completingAnOlderSequenceKeepsANewerOpPending() throws {
        let dir = try TempDir()
        let path = dir.path + "/keys.log"
        let harness = LoopHarness()
        var log = try KeyLog(path: path)
        let k = Durable.key(9)
        try Durable.mark(log, .dirty, k, on: harness).get()
        let first = try #require(log.takeBatch(max: 10).first)
        #expect(log.takeBatch(max: 10).isEmpty, "a checked-out key is not handed out twice")

        // A newer write lands while the flush of `first` is under way.
        try Durable.mark(log, .dirty, k, on: harness).get()
        #expect(!log.complete(k, sequence: first.sequence))
        #expect(log.backlog.dirty == 1 && log.backlog.checkedOut == 0)
        let second = try #require(log.takeBatch(max: 10).first)
        #expect(second.key == k && second.sequence > first.sequence)
        #expect(second.sinceMillis == first.sinceMillis, "the key has been pending since the first write")

        // The stale completion, replayed, must not clear it either.
        log.close()
        log = try KeyLog(path: path)
        #expect(log.pendingItem(k)?.sequence == second.sequence)
        #expect(log.complete(k, sequence: second.sequence))
        log.close()
        log = try KeyLog(path: path)
        defer { log.close() }
        #expect(log.pendingItems.isEmpty)
    }

    @Test func compactionKeepsExactlyThePendingSet() throws {
        let dir = try TempDir()
        let path = dir.path + "/keys.log"
        let harness = LoopHarness()
        var log = try KeyLog(path: path)
        try #require(try Durable.markMany(log, on: harness, count: 2000) { (.dirty, Durable.key($0)) } == 0)
        try #require(try Durable.markMany(log, on: harness, count: 300) { (.delete, Durable.key(10_000 + $0)) } == 0)
        var taken = log.takeBatch(max: 1900)
        for item in taken where item.op == .dirty && item.key != Durable.key(5) { log.complete(item.key, sequence: item.sequence) }
        for item in taken { log.release(item.key) }
        taken = []
        let before = log.pendingItems
        #expect(before.count == 2300 - 1899)
        let sizeBefore = Durable.fileSize(path)

        try harness.wait("compact") { log.compact(on: harness.loop, $0) }.get()
        #expect(log.stats.compactions == 1)
        #expect(log.stats.fileRecords == before.count)
        #expect(Durable.fileSize(path) < sizeBefore / 4)
        #expect(Durable.fileSize(dir.path + "/keys.log.compact") == -1, "no temp file left")
        // Appends after compaction go to the new file.
        try Durable.mark(log, .delete, Durable.key(5), on: harness).get()
        let after = log.pendingItems
        log.close()

        log = try KeyLog(path: path)
        defer { log.close() }
        #expect(log.pendingItems == after)
        #expect(log.recovery.records == before.count + 1 && log.recovery.tornBytes == 0)
        #expect(log.isPendingDelete(Durable.key(5)))
    }

    @Test func compactionStartsByItselfWhenDeadRecordsDominate() throws {
        let dir = try TempDir()
        let path = dir.path + "/keys.log"
        let harness = LoopHarness()
        var options = KeyLog.Options()
        options.compactMinRecords = 200
        var log = try KeyLog(path: path, options: options)
        try #require(try Durable.markMany(log, on: harness, count: 5000) { (.dirty, Durable.key($0 % 10)) } == 0)
        #expect(log.stats.compactions > 0)
        #expect(log.stats.fileRecords < 400)
        let pending = log.pendingItems
        #expect(pending.count == 10)
        log.close()
        log = try KeyLog(path: path, options: options)
        defer { log.close() }
        #expect(log.pendingItems == pending)
    }

    @Test func groupCommitCoversEverythingQueuedWithOneSync() throws {
        let dir = try TempDir()
        let log = try KeyLog(path: dir.path + "/keys.log")
        defer { log.close() }
        let harness = LoopHarness()

        // Deterministic: 100 marks queued behind a held writer are one batch, one fdatasync.
        log.suspendWriter()
        let box = Completion<Int>()
        harness.loop.execute {
            var left = 100
            for i in 0..<100 {
                log.markDirty(Durable.key(i), on: harness.loop) { _ in
                    left -= 1
                    if left == 0 { box.fulfil(0, onLoop: harness.loop.isRunning) }
                }
            }
            log.resumeWriter()
        }
        #expect(box.wait(seconds: 20) == 0)
        #expect(log.stats.syncs == 1 && log.stats.appends == 100)

        // Streaming: 5000 marks with 64 in flight need far fewer syncs than marks.
        try #require(try Durable.markMany(log, on: harness, count: 5000, inFlight: 64) { (.dirty, Durable.key(1000 + $0)) } == 0)
        let stats = log.stats
        #expect(stats.appends == 5100)
        #expect(stats.syncs * 8 < stats.appends, "syncs \(stats.syncs) for \(stats.appends) appends")
    }

    @Test func marksFromFourLoopsAllLandInSequenceOrder() throws {
        let dir = try TempDir()
        let path = dir.path + "/keys.log"
        var log = try KeyLog(path: path)
        let loops = (0..<4).map { LoopHarness(name: "marker-\($0)") }
        let failures = Reactor.AtomicCounter()
        var threads = [pthread_t]()
        for (n, harness) in loops.enumerated() {
            var thread = pthread_t()
            let started = startThread(&thread) { [log] in
                let failed = (try? Durable.markMany(log, on: harness, count: 500, inFlight: 32) { i in
                    (i % 5 == 0 ? .delete : .dirty, Durable.key(n * 1000 + i, db: n))
                }) ?? 500
                failures.add(failed)
            }
            #expect(started)
            threads.append(thread)
        }
        for t in threads { pthread_join(t, nil) }
        #expect(failures.value == 0, "no mark failed")
        #expect(log.backlog.dirty == 1600 && log.backlog.deletes == 400)
        let groupCommit = log.stats
        log.close()

        let sequences = try Durable.recordsOnDisk(path).map(\.sequence)
        #expect(sequences.count == 2000 && sequences == sequences.sorted(), "file order is sequence order")
        #expect(groupCommit.syncs < groupCommit.appends)
        log = try KeyLog(path: path)
        defer { log.close() }
        #expect(log.recovery.pending == 2000)
        #expect(log.isPendingDelete(Durable.key(3005, db: 3)) && !log.isPendingDelete(Durable.key(3006, db: 3)))
    }

    @Test func thePendingIndexIsBounded() throws {
        let dir = try TempDir()
        var options = KeyLog.Options()
        options.maxPendingKeys = 3
        options.maxPendingKeyBytes = 1000
        let log = try KeyLog(path: dir.path + "/keys.log", options: options)
        defer { log.close() }
        let harness = LoopHarness()
        for i in 0..<3 { try Durable.mark(log, .dirty, Durable.key(i), on: harness).get() }
        let refused = try Durable.mark(log, .dirty, Durable.key(3), on: harness)
        guard case .failure(.unavailable(let message)) = refused else { Issue.record("accepted \(refused)"); return }
        #expect(message.contains("backlog full"))
        // Keys already pending can always be marked again (coalescing needs no room).
        try Durable.mark(log, .delete, Durable.key(1), on: harness).get()
        let item = try #require(log.takeBatch(max: 1).first)
        #expect(log.complete(item.key, sequence: item.sequence))
        try Durable.mark(log, .dirty, Durable.key(3), on: harness).get()
        // The byte limit too.
        let big = TierKey(db: 0, [UInt8](repeating: 7, count: 995))
        #expect(log.complete(Durable.key(3), sequence: log.pendingItem(Durable.key(3))!.sequence))
        guard case .failure = try Durable.mark(log, .dirty, big, on: harness) else { Issue.record("byte limit not enforced"); return }
    }

    @Test func backlogAgeSurvivesARestartAndASecondOpenIsRefused() throws {
        let dir = try TempDir()
        let path = dir.path + "/keys.log"
        let harness = LoopHarness()
        var log = try KeyLog(path: path)
        try Durable.mark(log, .dirty, Durable.key(1), on: harness).get()
        #expect(throws: TierError.self) { try KeyLog(path: path) }
        usleep(60_000)
        try Durable.mark(log, .dirty, Durable.key(1), on: harness).get()
        #expect(log.backlog.oldestAgeMillis >= 50, "re-marking does not reset the age")
        log.close()
        log = try KeyLog(path: path)
        defer { log.close() }
        #expect(log.backlog.oldestAgeMillis >= 50)
        #expect(log.backlog.dirty == 1)
    }

    @Test func aFileThatIsNotAKeyLogIsRefusedNotOverwritten() throws {
        let dir = try TempDir()
        let path = dir.path + "/keys.log"
        try FileOps.writeAtomically(path, Array("SQLite format 3\0 and more".utf8), sync: .none)
        #expect(throws: TierError.self) { try KeyLog(path: path) }
        #expect(Durable.fileSize(path) == 25)
    }
}
