import Glibc

/// The few POSIX file operations the directory tier needs, with EINTR and short reads/writes
/// handled and errno turned into messages. Runs on worker threads only.
enum FileOps {
    /// Temp-file names differ per process, thread and call, so concurrent writers never share one.
    private static let counter = AtomicCounter()

    /// The whole file, or nil if it does not exist.
    static func readFile(_ path: String) throws(TierError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw error("cannot open \(path)")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw error("cannot stat \(path)") }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var filled = 0
        while filled < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if n < 0 {
                if errno == EINTR { continue }
                throw error("cannot read \(path)")
            }
            if n == 0 { break }  // shrank under us; the envelope check will say so
            filled += n
        }
        if filled < bytes.count { bytes.removeSubrange(filled...) }
        return bytes
    }

    /// Writes `bytes` to a temp file beside `path`, syncs per `sync`, renames it over `path`.
    static func writeAtomically(_ path: String, _ bytes: [UInt8], sync: DirectoryTier.Sync) throws(TierError) {
        let dir = parent(of: path)
        let temp = dir + "/.tmp." + String(getpid()) + "." + String(counter.next())
        var fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if fd < 0 && errno == ENOENT {
            try makeDirectories(dir)
            fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        }
        guard fd >= 0 else { throw error("cannot create \(temp)") }
        var failure: TierError?
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                failure = error("cannot write \(temp)")
                break
            }
            written += n
        }
        if failure == nil, sync != .none, fsync(fd) != 0 { failure = error("cannot fsync \(temp)") }
        if close(fd) != 0, failure == nil { failure = error("cannot close \(temp)") }
        if failure == nil, rename(temp, path) != 0 { failure = error("cannot rename \(temp) to \(path)") }
        if let failure {
            _ = unlink(temp)
            throw failure
        }
        if sync == .full { syncDirectory(of: path) }
    }

    /// fsyncs the directory holding `path`, making a rename or unlink in it durable. Best effort:
    /// some file systems refuse directory fsync, and the data itself is already safe.
    static func syncDirectory(of path: String) {
        let fd = open(parent(of: path), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }

    /// The names in a directory (not `.` and `..`), unsorted; empty if it does not exist or is not one.
    static func names(in path: String) throws(TierError) -> [String] {
        guard let dir = opendir(path) else {
            if errno == ENOENT || errno == ENOTDIR { return [] }
            throw error("cannot list \(path)")
        }
        defer { closedir(dir) }
        var names = [String]()
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// `mkdir -p`.
    static func makeDirectories(_ path: String) throws(TierError) {
        if mkdir(path, 0o755) == 0 || errno == EEXIST { return }
        guard errno == ENOENT else { throw error("cannot create directory \(path)") }
        let up = parent(of: path)
        guard up != path, !up.isEmpty else { throw error("cannot create directory \(path)") }
        try makeDirectories(up)
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw error("cannot create directory \(path)") }
    }

    static func parent(of path: String) -> String {
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) else { return "." }
        if slash == path.utf8.startIndex { return "/" }
        return String(path[..<slash])
    }

    /// An error carrying `errno`'s text. Space and quota problems may pass: `.unavailable`.
    static func error(_ what: String) -> TierError {
        let code = errno
        let message = "\(what): \(String(cString: strerror(code)))"
        switch code {
        case ENOSPC, EDQUOT, EIO, EAGAIN, ENOMEM, EMFILE, ENFILE, EROFS: return .unavailable(message)
        default: return .failed(message)
        }
    }
}

/// A process-wide counter for unique temp names (a mutex: this is not a hot path next to fsync).
final class AtomicCounter {
    private var mutex = pthread_mutex_t()
    private var value: UInt64 = 0
    init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }
    func next() -> UInt64 {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        value += 1
        return value
    }
}
