import Glibc
import Reactor

/// The embedded cold tier: one file per entry under a directory, shared by every loop.
///
/// Layout: `<root>/<ab>/<cd>/<name>`, where `name` is `TierNames.fileName(key)` and `ab`, `cd`
/// are the first two bytes (hex) of the FNV-1a 64-bit hash of the name, so no directory grows
/// past a few thousand files. Each file is an `EntryEnvelope`; values of at least
/// `compressThreshold` bytes are stored gzip (encoding byte = 1) when that is smaller, and any
/// file reads back whichever way it was written.
///
/// A write goes to a temporary file in the target directory, is fsynced (per `sync`), then
/// renamed over the name: a crash leaves the old entry or the new one, never a torn one (and
/// the envelope's CRC catches anything else). File I/O runs on `workers` threads; a key always
/// goes to the same thread, so writes of one key apply in the order they were made.
public final class DirectoryTier: SharedTier {
    /// How hard a write works to survive power loss.
    public enum Sync: String, Sendable {
        /// No fsync: fastest; a power cut may lose recent writes (never tears one: rename + CRC).
        case none
        /// fsync the file before the rename: its contents are durable once it has a name.
        case file
        /// Also fsync the directory after rename/unlink, so the name change itself is durable.
        case full
    }

    public let name: String
    public let root: String
    public let compressThreshold: Int
    public let sync: Sync
    public let valueLimit: Int
    /// Seals entries (envelope version 2) when `tier-encryption-key` is set; nil: version 1.
    public let cipher: EntryCipher?
    private let workers: [WorkerThread<Job>]
    /// What the worker-side jobs capture instead of `self`, so the tier is never released (and
    /// its threads joined) from one of its own worker threads.
    private let files: DirectoryFiles
    /// Names this tier may hold (`mayHold`): a write-through skips its delete here otherwise.
    let presence = PresenceFilter()

    /// Uses (creating if needed) the directory at `path`.
    public init(path: String, compressThreshold: Int = 1 << 20, sync: Sync = .full, workers: Int = 2,
                valueLimit: Int = 512 << 20, cipher: EntryCipher? = nil) throws(TierError) {
        root = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        name = "dir:\(root)"
        self.compressThreshold = compressThreshold
        self.sync = sync
        self.valueLimit = valueLimit
        self.cipher = cipher
        try FileOps.makeDirectories(root)
        files = DirectoryFiles(compressThreshold: compressThreshold, sync: sync, valueLimit: valueLimit, cipher: cipher)
        var pool = [WorkerThread<Job>]()
        for i in 0..<max(1, workers) {
            pool.append(WorkerThread(name: "tp-dir\(i)", maxBatch: 64) { jobs in for job in jobs { job.loop.execute(job.work()) } })
        }
        self.workers = pool
        try Self.startPresenceWalk(root: root, into: presence)
    }

    deinit { close() }

    /// Finishes queued work and stops the threads; later calls fail `.unavailable`.
    public func close() { for w in workers { w.stop() } }

    // MARK: - SharedTier

    public func get(_ keys: [TierKey], on loop: EventLoop, _ done: @escaping ([Result<Entry?, TierError>]) -> Void) {
        let files = self.files
        dispatch(keys, key: { $0 }, on: loop, done) { key, path in files.read(key, path) }
    }

    public func put(_ items: [(TierKey, Entry)], on loop: EventLoop, _ done: @escaping ([Result<Void, TierError>]) -> Void) {
        let files = self.files
        dispatch(items, key: { $0.0 }, on: loop, noting: true, done) { item, path in files.write(item.0, item.1, path) }
    }

    public func delete(_ keys: [TierKey], on loop: EventLoop, _ done: @escaping ([Result<Void, TierError>]) -> Void) {
        let files = self.files
        dispatch(keys, key: { $0 }, on: loop, done) { _, path in files.remove(path) }
    }

    /// Each worker walks the fan-out directories and unlinks the files it owns (those whose keys
    /// it serves), so the purge is ordered after every operation on those keys queued before it.
    /// A file's db is read from its name, which is what decides which reads can see it.
    public func purge(db: Int?, on loop: EventLoop, _ done: @escaping (Result<Int, TierError>) -> Void) {
        let (files, root, count) = (self.files, self.root, UInt64(workers.count))
        let gather = Gather<Int>(count: workers.count) { results in
            // The total, or the first worker's failure.
            done(results.reduce(.success(0)) { total, part in total.flatMap { t in part.map { t + $0 } } })
        }
        for i in 0..<count {
            submit(i, on: loop, closed: { gather.set(Int(i), .failure($0)) }) {
                let result = files.purge(root: root, db: db) { hash in hash % count == i }
                return { gather.set(Int(i), result) }
            }
        }
    }

    public func check(on loop: EventLoop, _ done: @escaping (Result<String, TierError>) -> Void) {
        let probe = TierKey(db: 0, Array(".check".utf8))  // dot names are never readable file names
        let entry = Entry(value: Array("probe".utf8))
        let path = root + "/.check-probe"
        let name = self.name
        submit(0, on: loop, closed: { done(.failure($0)) }) {
            let result: Result<String, TierError>
            do throws(TierError) {
                try FileOps.writeAtomically(path, EntryEnvelope.encode(key: probe, entry: entry), sync: .none)
                _ = try FileOps.readFile(path)
                _ = unlink(path)
                result = .success("ok: \(name)")
            } catch {
                result = .failure(error)
            }
            return { done(result) }
        }
    }

    // MARK: - Paths and routing

    /// The file for `key`: `<root>/<ab>/<cd>/<name>`.
    public func path(for key: TierKey) -> String { location(of: key).path }

    /// The file for `key` and the hash of its name (which also picks the worker, so every
    /// operation on one file runs on one thread, in order).
    private func location(of key: TierKey) -> (path: String, hash: UInt64) {
        let fileName = TierNames.fileName(key)
        let h = Self.fnv1a(fileName.utf8)
        let hex = TierNames.hex([UInt8(truncatingIfNeeded: h >> 56), UInt8(truncatingIfNeeded: h >> 48)])
        let path = root + "/" + String(decoding: hex[0..<2], as: UTF8.self) + "/" + String(decoding: hex[2..<4], as: UTF8.self)
            + "/" + fileName
        return (path, h)
    }

    /// FNV-1a, 64-bit: stable across platforms and releases (it places files; never change it).
    static func fnv1a<S: Sequence>(_ bytes: S) -> UInt64 where S.Element == UInt8 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return h
    }

    struct Job {
        let loop: EventLoop
        /// Runs on a worker; returns the completion for `loop`.
        let work: () -> () -> Void
    }

    /// Queues `work` on the worker for `hash`; if the tier is closed, runs `closed` on `loop` instead.
    func submit(_ hash: UInt64, on loop: EventLoop, closed: @escaping (TierError) -> Void,
                        _ work: @escaping () -> () -> Void) {
        let worker = workers[Int(hash % UInt64(workers.count))]
        if !worker.submit(Job(loop: loop, work: work)) {
            let error = TierError.unavailable("\(name) is closed")
            loop.execute { closed(error) }
        }
    }

    /// Runs `op` for each item on its key's worker; gathers results on `loop` in item order.
    /// `noting`: the op may create the file, so its name joins `presence` before it starts.
    private func dispatch<Item, T>(_ items: [Item], key: (Item) -> TierKey, on loop: EventLoop, noting: Bool = false,
                                   _ done: @escaping ([Result<T, TierError>]) -> Void,
                                   _ op: @escaping (Item, String) -> Result<T, TierError>) {
        if items.isEmpty {
            loop.execute { done([]) }
            return
        }
        // Touched only on `loop` (each part's completion runs there), so no lock.
        let gather = Gather<T>(count: items.count, done)
        for (i, item) in items.enumerated() {
            let (path, hash) = location(of: key(item))
            if noting { presence.insert(hash) }
            submit(hash, on: loop, closed: { gather.set(i, .failure($0)) }) {
                let result = op(item, path)
                return { gather.set(i, result) }
            }
        }
    }
}

/// The file work of a `DirectoryTier`, run on its worker threads.
struct DirectoryFiles {
    let compressThreshold: Int
    let sync: DirectoryTier.Sync
    let valueLimit: Int
    let cipher: EntryCipher?

    func read(_ key: TierKey, _ path: String) -> Result<Entry?, TierError> {
        do throws(TierError) {
            guard let bytes = try FileOps.readFile(path) else { return .success(nil) }
            let contents = try EntryEnvelope.decode(bytes, cipher: cipher)
            // Another key under the same (hash) name: this key is absent.
            guard contents.key == key else { return .success(nil) }
            if let e = contents.expiresAtMillis, e <= wallClockMillis() {
                // Lazy expiry. Safe without a lock: every write of this key runs on this thread.
                _ = unlink(path)
                return .success(nil)
            }
            return .success(try contents.entry(valueLimit: valueLimit))
        } catch {
            return .failure(error)
        }
    }

    func write(_ key: TierKey, _ entry: Entry, _ path: String) -> Result<Void, TierError> {
        do throws(TierError) {
            // Compression first, then (when configured) encryption of the compressed bytes.
            let envelope: [UInt8]
            if entry.value.count >= compressThreshold {
                let z = Gzip.compress(entry.value)
                // Already-compressed data (images, archives) can grow: keep whichever is smaller.
                envelope = z.count < entry.value.count
                    ? try EntryEnvelope.encode(key: key, entry: entry, storedValue: z, encoding: .gzip, cipher: cipher)
                    : try EntryEnvelope.encode(key: key, entry: entry, cipher: cipher)
            } else {
                envelope = try EntryEnvelope.encode(key: key, entry: entry, cipher: cipher)
            }
            try FileOps.writeAtomically(path, envelope, sync: sync)
            return .success(())
        } catch {
            return .failure(error)
        }
    }

    /// Unlinks the entry files under `root/ab/cd/` whose name hash `owns` accepts and whose name
    /// is of database `db` (nil: any). Dot files (temp files, the check probe) are never entries.
    func purge(root: String, db: Int?, owns: (UInt64) -> Bool) -> Result<Int, TierError> {
        var deleted = 0
        do throws(TierError) {
            for top in try FileOps.names(in: root) where Self.isFanOut(top) {
                for sub in try FileOps.names(in: root + "/" + top) where Self.isFanOut(sub) {
                    let dir = root + "/" + top + "/" + sub
                    var lastRemoved: String?
                    for name in try FileOps.names(in: dir) where !name.hasPrefix(".") {
                        guard owns(DirectoryTier.fnv1a(name.utf8)),
                              let fileDB = TierNames.db(ofFileName: name), db == nil || fileDB == db else { continue }
                        let path = dir + "/" + name
                        if unlink(path) == 0 {
                            deleted += 1
                            lastRemoved = path
                        } else if errno != ENOENT && errno != EISDIR {  // gone already; a stray directory
                            throw FileOps.error("cannot delete \(path)")
                        }
                    }
                    if sync == .full, let path = lastRemoved { FileOps.syncDirectory(of: path) }
                }
            }
        } catch {
            return .failure(error)
        }
        return .success(deleted)
    }

    /// A fan-out directory name: two lower-case hex digits.
    static func isFanOut(_ name: String) -> Bool {
        name.utf8.count == 2 && name.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    func remove(_ path: String) -> Result<Void, TierError> {
        if unlink(path) != 0 {
            return errno == ENOENT ? .success(()) : .failure(FileOps.error("cannot delete \(path)"))
        }
        if sync == .full { FileOps.syncDirectory(of: path) }
        return .success(())
    }
}

/// Results of one batched call arriving piecemeal on the caller's loop.
private final class Gather<T> {
    private var results: [Result<T, TierError>?]
    private var remaining: Int
    private let done: ([Result<T, TierError>]) -> Void

    init(count: Int, _ done: @escaping ([Result<T, TierError>]) -> Void) {
        results = Array(repeating: nil, count: count)
        remaining = count
        self.done = done
    }

    func set(_ i: Int, _ r: Result<T, TierError>) {
        results[i] = r
        remaining -= 1
        if remaining == 0 { done(results.map { $0! }) }
    }
}
