import Glibc
import Reactor

extension DirectoryTier {
    /// Walks the fan-out directories in name order (`ab/cd/name`); the continuation is the path
    /// of the last file listed, below the root. Each file's key, type and expiry come from its
    /// envelope's header (the first few KB), not from the whole file.
    public func list(db: Int, after: String?, limit: Int, on loop: EventLoop,
                     _ done: @escaping (Result<KeyPage, TierError>) -> Void) {
        let root = self.root
        submit(0, on: loop, closed: { done(.failure($0)) }) {
            let result = Result { () throws(TierError) in try DirectoryFiles.list(root: root, db: db, after: after, limit: max(1, limit)) }
            return { done(result) }
        }
    }
}

extension DirectoryFiles {
    static func list(root: String, db: Int, after: String?, limit: Int) throws(TierError) -> KeyPage {
        let start = after.map { $0.split(separator: "/", omittingEmptySubsequences: false).map(String.init) } ?? []
        guard after == nil || start.count == 3 else { throw .failed("bad listing position") }
        var keys = [ListedKey]()
        var last: String?
        for top in try FileOps.names(in: root).filter(DirectoryFiles.isFanOut).sorted() where start.isEmpty || top >= start[0] {
            for sub in try FileOps.names(in: root + "/" + top).filter(DirectoryFiles.isFanOut).sorted()
            where start.isEmpty || (top, sub) >= (start[0], start[1]) {
                let dir = root + "/" + top + "/" + sub
                let resumeHere = !start.isEmpty && (top, sub) == (start[0], start[1])
                for name in try FileOps.names(in: dir).sorted() where !name.hasPrefix(".") && (!resumeHere || name > start[2]) {
                    guard TierNames.db(ofFileName: name) == db else { continue }
                    // A file that is gone or damaged is not a key (a read would say so, not list it).
                    if let listed = readListedKey(dir + "/" + name), listed.key.db == db {
                        keys.append(listed)
                    }
                    last = top + "/" + sub + "/" + name
                    if keys.count >= limit { return KeyPage(keys: keys, next: last) }
                }
            }
        }
        return KeyPage(keys: keys, next: nil)
    }

    /// The listed key of the file at `path`: its first 4 KB, or as much as its key needs.
    private static func readListedKey(_ path: String) -> ListedKey? {
        guard let head = try? FileOps.readPrefix(path, 4096) else { return nil }
        if let listed = EntryEnvelope.listedKey(head) { return listed }
        guard head.count == 4096, let whole = try? FileOps.readPrefix(path, 28 + EntryEnvelope.keyLength(head)) else { return nil }
        return EntryEnvelope.listedKey(whole)
    }
}

extension EntryEnvelope {
    static func keyLength(_ head: [UInt8]) -> Int { (24..<28).reversed().reduce(0) { $0 << 8 | Int(head[$1]) } }

    /// The key, db, type (version 1 only: version 2 seals it) and expiry an envelope's first bytes
    /// hold; nil if they are not the start of an envelope. The CRC is not checked (it covers the
    /// whole entry): a read of the key checks it.
    static func listedKey(_ head: [UInt8]) -> ListedKey? {
        guard head.count >= 28, head[0] == magic[0], head[1] == magic[1], head[2] == magic[2],
              head[3] == magic[3] || head[3] == sealedVersion else { return nil }
        func le(_ at: Int, _ size: Int) -> UInt64 { (0..<size).reversed().reduce(0) { $0 << 8 | UInt64(head[at + $1]) } }
        let keyCount = Int(le(24, 4))
        guard keyCount <= head.count - 28, let db = Int(exactly: Int64(bitPattern: le(16, 8))) else { return nil }
        let type = head[3] == magic[3] ? ValueType(code: head[4]) : nil
        let expiry: Int64? = head[6] & 1 == 1 ? Int64(bitPattern: le(8, 8)) : nil
        return ListedKey(key: TierKey(db: db, Array(head[28..<(28 + keyCount)])), type: type, expiresAtMillis: expiry)
    }
}

extension FileOps {
    /// Up to `count` bytes from the start of the file; nil if it does not exist.
    static func readPrefix(_ path: String, _ count: Int) throws(TierError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT || errno == ENOTDIR || errno == EISDIR { return nil }
            throw error("cannot open \(path)")
        }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + filled, count - filled, off_t(filled)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw error("cannot read \(path)")
            }
            if n == 0 { break }
            filled += n
        }
        bytes.removeSubrange(filled...)
        return bytes
    }
}
