import Glibc
import Reactor
import Testing
@testable import Tiers

/// The conformance suite on the embedded backends, with real files in a temp directory.
@Suite struct LocalTierConformance {
    @Test(arguments: TierConformance.scenarios)
    func sqlite(_ scenario: TierScenario) throws {
        let dir = try TempDir()
        let store = try SQLiteTier(path: dir.path + "/warm.db")
        defer { store.close() }
        try TierConformance.run(scenario) { loop in store.tier(for: loop) }
    }

    @Test(arguments: TierConformance.scenarios)
    func directory(_ scenario: TierScenario) throws {
        let dir = try TempDir()
        let store = try DirectoryTier(path: dir.path + "/cold")
        defer { store.close() }
        try TierConformance.run(scenario) { loop in store.tier(for: loop) }
    }
}

@Suite struct LocalTierBehaviour {
    @Test func directoryStoresLargeValuesGzipAndReadsEitherWay() throws {
        let dir = try TempDir()
        let harness = LoopHarness()
        let store = try DirectoryTier(path: dir.path, compressThreshold: 1 << 20)
        defer { store.close() }
        let tier = store.tier(for: harness.loop)
        let big = TierConformance.bigValue(5_000_000)
        let key = TierKey(db: 0, "big")
        try harness.wait("put") { tier.put(key, Entry(value: big), $0) }.get()

        let onDisk = try #require(try FileOps.readFile(store.path(for: key)))
        let contents = try EntryEnvelope.decode(onDisk)
        #expect(contents.encoding == .gzip)
        #expect(Gzip.isGzip(contents.storedValue))
        #expect(onDisk.count < big.count / 3)

        // A file written raw (say, under an older threshold) reads back the same way.
        try FileOps.writeAtomically(store.path(for: key), EntryEnvelope.encode(key: key, entry: Entry(value: big)), sync: .none)
        #expect(try harness.wait("get") { tier.get(key, $0) }.get()?.value == big)
        // Small values stay raw.
        try harness.wait("put") { tier.put(TierKey("small"), Entry(value: [1, 2, 3]), $0) }.get()
        #expect(try EntryEnvelope.decode(try #require(try FileOps.readFile(store.path(for: TierKey("small"))))).encoding == .raw)
    }

    @Test func directoryLayoutIsTwoLevelFanOutWithNoTempFilesLeft() throws {
        let dir = try TempDir()
        let harness = LoopHarness()
        let store = try DirectoryTier(path: dir.path)
        defer { store.close() }
        let tier = store.tier(for: harness.loop)
        let key = TierKey("user:1")
        try harness.wait("put") { tier.put(key, Entry(value: [1]), $0) }.get()
        let path = store.path(for: key)
        let parts = path.dropFirst(dir.path.count + 1).split(separator: "/")
        #expect(parts.count == 3 && parts[0].count == 2 && parts[1].count == 2 && parts[2] == "user:1")
        #expect(listDirectory(FileOps.parent(of: path)) == ["user:1"])
    }

    @Test func damagedFilesAreErrorsAndForeignKeysAreAbsent() throws {
        let dir = try TempDir()
        let harness = LoopHarness()
        let store = try DirectoryTier(path: dir.path)
        defer { store.close() }
        let tier = store.tier(for: harness.loop)
        let key = TierKey("victim")
        try FileOps.writeAtomically(store.path(for: key), Array("torn".utf8), sync: .none)
        #expect(throws: TierError.self) { try harness.wait("get") { tier.get(key, $0) }.get() }
        // A file under this key's name holding another key (a hash collision) reads as absent.
        try FileOps.writeAtomically(store.path(for: key), EntryEnvelope.encode(key: TierKey("other"), entry: Entry(value: [1])), sync: .none)
        #expect(try harness.wait("get") { tier.get(key, $0) }.get() == nil)
    }

    @Test func sqliteSurvivesReopenAndSharesAcrossLoops() throws {
        let dir = try TempDir()
        let path = dir.path + "/warm.db"
        let a = LoopHarness(name: "loop-a"), b = LoopHarness(name: "loop-b")
        do {
            let store = try SQLiteTier(path: path)
            let ta = store.tier(for: a.loop), tb = store.tier(for: b.loop)
            // Many writes from two loops at once, each completion on its own loop (the harness checks).
            let n = 500
            let fromA = try a.wait("putMany a") { done in
                ta.putMany((0..<n).map { (TierKey("a\($0)"), Entry(value: [1])) }, done)
            }
            let fromB = try b.wait("putMany b") { done in
                tb.putMany((0..<n).map { (TierKey(db: 1, "b\($0)"), Entry(value: [2], expiresAtMillis: 1)) }, done)
            }
            #expect(fromA.count == n && fromB.count == n)
            #expect(try b.wait("get from b") { tb.get(TierKey("a7"), $0) }.get()?.value == [1])
            // Expired rows are never served, and purge reclaims them.
            #expect(try a.wait("get expired") { ta.get(TierKey(db: 1, "b7"), $0) }.get() == nil)
            let purged = try a.wait("purge") { store.purgeExpired(limit: 10_000, on: a.loop, $0) }.get()
            #expect(purged == n - 1)
            store.close()
            #expect(throws: TierError.self) { try a.wait("get after close") { ta.get(TierKey("a1"), $0) }.get() }
        }
        let reopened = try SQLiteTier(path: path)
        defer { reopened.close() }
        #expect(try a.wait("get after reopen") { reopened.tier(for: a.loop).get(TierKey("a499"), $0) }.get()?.value == [1])
    }

    /// Writes queued before a purge are purged; writes queued after it survive. Everything is
    /// started in one loop turn, so only the tier's ordering decides.
    @Test(arguments: ["sqlite", "directory"])
    func purgeIsOrderedWithTheWritesAroundIt(_ backend: String) throws {
        let dir = try TempDir()
        let harness = LoopHarness()
        let shared: SharedTier = backend == "sqlite" ? try SQLiteTier(path: dir.path + "/warm.db")
                                                     : try DirectoryTier(path: dir.path + "/cold", sync: .none, workers: 4)
        defer { (shared as? SQLiteTier)?.close(); (shared as? DirectoryTier)?.close() }
        let tier = shared.tier(for: harness.loop)
        let before = (0..<200).map { TierKey(db: 1, "before-\($0)") }
        let after = (0..<200).map { TierKey(db: 1, "after-\($0)") }
        let other = TierKey(db: 2, "other")
        let purged: Result<Int, TierError> = try harness.wait("purge between writes") { done in
            var purged: Result<Int, TierError>?
            var writesLeft = 3
            func finished() { if writesLeft == 0, let purged { done(purged) } }
            let wrote: ([Result<Void, TierError>]) -> Void = { _ in writesLeft -= 1; finished() }
            tier.putMany(before.map { ($0, Entry(value: [1])) }, wrote)
            tier.putMany([(other, Entry(value: [3]))], wrote)
            tier.purge(db: 1) { purged = $0; finished() }
            tier.putMany(after.map { ($0, Entry(value: [2])) }, wrote)
        }
        #expect(try purged.get() == before.count)
        let got = try harness.wait("get") { tier.getMany(before + after + [other], $0) }
        #expect(got.prefix(before.count).allSatisfy { (try? $0.get()) == .some(nil) })
        #expect(got.dropFirst(before.count).prefix(after.count).allSatisfy { (try? $0.get())??.value == [2] })
        #expect(try got.last?.get()?.value == [3])
    }

    @Test func directoryPurgeLeavesTempFilesAndStraysAlone() throws {
        let dir = try TempDir()
        let harness = LoopHarness()
        let store = try DirectoryTier(path: dir.path)
        defer { store.close() }
        let tier = store.tier(for: harness.loop)
        let keys = [TierKey("user:1"), TierKey(db: 3, [0xFF, 0]), TierKey(db: 3, [])]
        for k in keys { try harness.wait("put") { tier.put(k, Entry(value: [1]), $0) }.get() }
        let fanOut = FileOps.parent(of: store.path(for: keys[0]))
        let strays = [fanOut + "/.tmp.999.1", dir.path + "/stray", dir.path + "/zz/yy/user:2", fanOut + "/Not-An-Entry"]
        for path in strays { try FileOps.writeAtomically(path, [0], sync: .none) }
        try FileOps.makeDirectories(fanOut + "/a-directory")

        #expect(try harness.wait("purge") { tier.purge(db: 3, $0) }.get() == 2)
        #expect(try harness.wait("purge") { tier.purge(db: nil, $0) }.get() == 1)
        for k in keys { #expect(try harness.wait("get") { tier.get(k, $0) }.get() == nil) }
        for path in strays { #expect(try FileOps.readFile(path) == [0], "\(path)") }
        #expect(listDirectory(fanOut + "/a-directory") == [])
    }

    @Test func sqliteRejectsAFileThatIsNotADatabase() throws {
        let dir = try TempDir()
        let path = dir.path + "/junk.db"
        try FileOps.writeAtomically(path, Array(repeating: 0x41, count: 8192), sync: .none)
        #expect(throws: TierError.self) { try SQLiteTier(path: path) }
        #expect(throws: TierError.self) { try SQLiteTier(path: dir.path + "/no/such/dir/warm.db") }
    }
}

func listDirectory(_ path: String) -> [String] {
    ((try? FileOps.names(in: path)) ?? []).sorted()
}

@Suite struct LocalTierConcurrency {
    @Test func sqliteCommitsEverythingQueuedInOneTransaction() throws {
        let dir = try TempDir()
        let harness = LoopHarness()
        let store = try SQLiteTier(path: dir.path + "/warm.db")
        defer { store.close() }
        let tier = store.tier(for: harness.loop)
        let before = store.served
        store.suspendWorker()
        let results = Completion<[Result<Void, TierError>]>()
        harness.loop.execute {
            var got = [Result<Void, TierError>]()
            for i in 0..<64 {
                tier.put(TierKey("gc\(i)"), Entry(value: [UInt8(i)])) { r in
                    got.append(r)
                    if got.count == 64 { results.fulfil(got, onLoop: harness.loop.isRunning) }
                }
            }
            harness.loop.execute { store.resumeWorker() }  // after all 64 are queued
        }
        let all = try #require(results.wait(seconds: 60))
        #expect(all.allSatisfy { (try? $0.get()) != nil })
        #expect(store.served.batches - before.batches == 1)
        #expect(store.served.jobs - before.jobs == 64)
    }

    /// Several loops pipeline writes and reads of their own keys without waiting; every read
    /// sees exactly the writes queued before it, and every completion lands on its own loop.
    @Test(arguments: ["sqlite", "dir"])
    func pipelinedOperationsFromManyLoopsApplyInOrder(_ backend: String) throws {
        let dir = try TempDir()
        let shared: SharedTier = backend == "sqlite" ? try SQLiteTier(path: dir.path + "/warm.db")
                                                     : try DirectoryTier(path: dir.path, sync: .none)
        defer { (shared as? SQLiteTier)?.close(); (shared as? DirectoryTier)?.close() }
        let harnesses = (0..<4).map { LoopHarness(name: "loop-\($0)") }
        let rounds = 50
        let waits = harnesses.enumerated().map { li, h -> Completion<[String]> in
            let done = Completion<[String]>()
            let tier = shared.tier(for: h.loop)
            h.loop.execute {
                var log = [String]()
                var pending = rounds * 5
                func note(_ s: String) {
                    log.append(s)
                    pending -= 1
                    if pending == 0 { done.fulfil(log, onLoop: h.loop.isRunning) }
                }
                for r in 0..<rounds {
                    let key = TierKey(db: li, "k\(r % 5)")
                    tier.put(key, Entry(value: [UInt8(r)])) { note("put \(r) \((try? $0.get()) != nil)") }
                    tier.get(key) { note("get \(r) \((try? $0.get())??.value ?? [])") }
                    tier.put(key, Entry(value: [UInt8(r), 1])) { note("put2 \(r) \((try? $0.get()) != nil)") }
                    tier.get(key) { note("get2 \(r) \((try? $0.get())??.value ?? [])") }
                    tier.delete(key) { _ in note("del \(r)") }
                }
            }
            return done
        }
        for w in waits {
            let log = try #require(w.wait(seconds: 120))
            let expected = (0..<rounds).flatMap { r in
                ["put \(r) true", "get \(r) \([UInt8(r)])", "put2 \(r) true", "get2 \(r) \([UInt8(r), 1])", "del \(r)"]
            }
            if backend == "sqlite" {
                // One worker, FIFO: completions arrive in submission order too.
                #expect(log == expected)
            } else {
                // Keys spread over worker threads: per-key order holds, cross-key completion order need not.
                #expect(log.sorted() == expected.sorted())
                for r in 0..<rounds { #expect(log.contains("get \(r) \([UInt8(r)])") && log.contains("get2 \(r) \([UInt8(r), 1])")) }
            }
        }
    }
}
