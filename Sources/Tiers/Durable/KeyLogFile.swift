import Glibc

/// The key log's file: open and replay, append + `fdatasync`, rewrite. Blocking calls; used
/// at open and then only on the log's writer thread.
final class KeyLogFile {
    let path: String
    private var fd: Int32
    /// Records in the file now (live and dead): with the pending count, the dead fraction.
    private(set) var records: Int
    private(set) var bytes: Int

    /// Opens or creates the log at `path`, locks it against a second process, replays it and
    /// cuts any torn tail. Returns the file and what replay read.
    static func open(_ path: String) throws(TierError) -> (KeyLogFile, KeyLogRecord.Scan) {
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileOps.error("cannot open key log \(path)") }
        // Two proxies appending to one log would interleave records and sequences.
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let e = FileOps.error("key log \(path) is in use by another process")
            _ = Glibc.close(fd)
            throw e
        }
        do throws(TierError) {
            let scan = try KeyLogRecord.scan(try FileOps.readFile(path) ?? [])
            let file = KeyLogFile(path: path, fd: fd, records: scan.records.count, bytes: scan.validEnd)
            if scan.validEnd == 0 {
                try file.write(KeyLogRecord.header)
                try file.sync()
                FileOps.syncDirectory(of: path)
                file.bytes = KeyLogRecord.header.count
            }
            if scan.tornBytes > 0 {
                guard ftruncate(fd, off_t(file.bytes)) == 0 else { throw FileOps.error("cannot cut torn tail of \(path)") }
                try file.sync()
            }
            guard lseek(fd, off_t(file.bytes), SEEK_SET) >= 0 else { throw FileOps.error("cannot seek in \(path)") }
            return (file, scan)
        } catch {
            _ = Glibc.close(fd)
            throw error
        }
    }

    private init(path: String, fd: Int32, records: Int, bytes: Int) {
        self.path = path
        self.fd = fd
        self.records = records
        self.bytes = bytes
    }

    deinit { close() }

    func close() {
        if fd >= 0 { _ = Glibc.close(fd) }
        fd = -1
    }

    /// Appends encoded records and makes them durable (one `fdatasync` for all of them).
    /// Appends records; `sync` false leaves them to the next synced append (records whose loss
    /// in a crash is harmless: a lost "done" only makes replay flush a key once more).
    func append(_ encoded: [UInt8], records count: Int, sync: Bool = true) throws(TierError) {
        try write(encoded)
        if sync { try self.sync() }
        records += count
        bytes += encoded.count
    }

    /// Replaces the file with `snapshot` (temp file, fsync, rename, directory fsync) and
    /// continues appending to the new one. On failure the old file stays in place and in use.
    func rewrite(_ snapshot: [KeyLogRecord]) throws(TierError) {
        let temp = path + ".compact"
        let newFD = Glibc.open(temp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard newFD >= 0 else { throw FileOps.error("cannot create \(temp)") }
        var encoded = KeyLogRecord.header
        for record in snapshot { record.encode(into: &encoded) }
        let old = fd
        fd = newFD
        do throws(TierError) {
            try write(encoded)
            guard fsync(newFD) == 0 else { throw FileOps.error("cannot fsync \(temp)") }
            guard flock(newFD, LOCK_EX | LOCK_NB) == 0 else { throw FileOps.error("cannot lock \(temp)") }
            guard rename(temp, path) == 0 else { throw FileOps.error("cannot rename \(temp) to \(path)") }
        } catch {
            fd = old
            _ = Glibc.close(newFD)
            _ = unlink(temp)
            throw error
        }
        FileOps.syncDirectory(of: path)
        _ = Glibc.close(old)
        records = snapshot.count
        bytes = encoded.count
    }

    private func write(_ encoded: [UInt8]) throws(TierError) {
        var written = 0
        while written < encoded.count {
            let n = encoded.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileOps.error("cannot append to key log \(path)")
            }
            written += n
        }
    }

    func sync() throws(TierError) {
        guard fdatasync(fd) == 0 else { throw FileOps.error("cannot fdatasync key log \(path)") }
    }
}
