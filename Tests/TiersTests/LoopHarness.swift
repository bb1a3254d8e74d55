import Glibc
import Reactor
@testable import Tiers

/// A real `EventLoop` on its own thread, and a way to start work on it and wait for the
/// completion with a deadline. Tests block their own thread on a condition variable; the loop
/// thread delivers, so nothing depends on Swift's cooperative pool.
final class LoopHarness {
    let thread: LoopThread
    var loop: EventLoop { thread.loop }

    init(name: String = "test-loop") {
        thread = LoopThread(name: name) { _ in }
    }

    deinit {
        let loop = self.loop
        loop.execute { loop.stop() }
        thread.join()
    }

    /// Runs `start` on the loop thread and returns what it passes to its callback, or throws
    /// `HarnessTimeout` if that takes longer than `seconds`.
    func wait<T>(_ what: String, seconds: Double = 60, _ start: @escaping (@escaping (T) -> Void) -> Void) throws -> T {
        let box = Completion<T>()
        loop.execute { start { value in box.fulfil(value, onLoop: self.loop.isRunning) } }
        guard let value = box.wait(seconds: seconds) else { throw HarnessTimeout(what: what, seconds: seconds) }
        return value
    }
}

struct HarnessTimeout: Error, CustomStringConvertible {
    let what: String
    let seconds: Double
    var description: String { "\(what): no completion within \(seconds) s" }
}

/// A value delivered once by one thread and awaited by another.
final class Completion<T> {
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var value: T?
    private var count = 0
    /// Deliveries that did not happen on the loop thread (a tier contract violation).
    private(set) var offLoop = 0

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&cond, nil)
    }

    deinit {
        pthread_cond_destroy(&cond)
        pthread_mutex_destroy(&mutex)
    }

    func fulfil(_ v: T, onLoop: Bool) {
        pthread_mutex_lock(&mutex)
        count += 1
        if !onLoop { offLoop += 1 }
        if value == nil { value = v }
        pthread_cond_broadcast(&cond)
        pthread_mutex_unlock(&mutex)
    }

    func wait(seconds: Double) -> T? {
        var deadline = timespec()
        clock_gettime(CLOCK_REALTIME, &deadline)
        let nanos = Int(deadline.tv_nsec) + Int((seconds - seconds.rounded(.down)) * 1e9)
        deadline.tv_sec += Int(seconds) + nanos / 1_000_000_000
        deadline.tv_nsec = nanos % 1_000_000_000
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        while value == nil {
            if pthread_cond_timedwait(&cond, &mutex, &deadline) == ETIMEDOUT { break }
        }
        precondition(count <= 1, "completion delivered \(count) times")
        precondition(offLoop == 0, "completion delivered off the loop thread")
        return value
    }
}

/// A fresh directory under /tmp, removed (recursively) when released.
final class TempDir {
    let path: String

    init() throws {
        var template = Array("/tmp/tiers-test-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw TierError.failed("mkdtemp failed") }
        path = String(cString: p)
    }

    deinit { removeTree(path) }
}

/// `rm -rf` without Foundation or a shell.
func removeTree(_ path: String) {
    if let dir = opendir(path) {
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name == "." || name == ".." { continue }
            removeTree(path + "/" + name)
        }
        closedir(dir)
        rmdir(path)
    } else {
        unlink(path)
    }
}
