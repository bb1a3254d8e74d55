import CLibevent
import Glibc

/// A one-shot or repeating timer on a loop. Cancel it or let it go; `deinit` cancels.
public final class Timer {
    private var event: OpaquePointer?
    private let action: () -> Void
    private let repeating: Bool

    /// Fires `action` after `millis`, once or every `millis` when `repeating`.
    public init(loop: EventLoop, millis: Int, repeating: Bool = false, _ action: @escaping () -> Void) {
        self.action = action
        self.repeating = repeating
        event = event_new(loop.base, -1, repeating ? Int16(EV_PERSIST) : 0, timerTrampoline,
                          Unmanaged.passUnretained(self).toOpaque())
        arm(millis)
    }

    /// Moves the deadline to `millis` from now (re-arms a fired one-shot timer).
    public func arm(_ millis: Int) {
        guard let e = event else { return }
        var tv = timeval(tv_sec: millis / 1000, tv_usec: (millis % 1000) * 1000)
        event_add(e, &tv)
    }

    public func cancel() {
        if let e = event { event_del(e) }
    }

    deinit { if let e = event { event_free(e) } ; event = nil }

    fileprivate func fire() { action() }
}

private func timerTrampoline(_ fd: Int32, _ what: Int16, _ arg: UnsafeMutableRawPointer?) {
    Unmanaged<Timer>.fromOpaque(arg!).takeUnretainedValue().fire()
}

/// Watches a file descriptor for readiness (used to drive libcurl's sockets from the loop).
public final class FDWatcher {
    private var event: OpaquePointer?
    private let onReady: (_ readable: Bool, _ writable: Bool) -> Void

    public init(loop: EventLoop, fd: Int32, read: Bool, write: Bool,
                _ onReady: @escaping (_ readable: Bool, _ writable: Bool) -> Void) {
        self.onReady = onReady
        var what = Int16(EV_PERSIST)
        if read { what |= Int16(EV_READ) }
        if write { what |= Int16(EV_WRITE) }
        event = event_new(loop.base, fd, what, fdTrampoline, Unmanaged.passUnretained(self).toOpaque())
        event_add(event, nil)
    }

    public func cancel() { if let e = event { event_del(e) } }

    deinit { if let e = event { event_free(e) } }

    fileprivate func fire(_ what: Int16) {
        onReady(what & Int16(EV_READ) != 0, what & Int16(EV_WRITE) != 0)
    }
}

private func fdTrampoline(_ fd: Int32, _ what: Int16, _ arg: UnsafeMutableRawPointer?) {
    Unmanaged<FDWatcher>.fromOpaque(arg!).takeUnretainedValue().fire(what)
}

/// Runs `action` on the loop when the process receives `signal` (SIGTERM, SIGINT, SIGHUP).
public final class SignalWatcher {
    private var event: OpaquePointer?
    private let action: () -> Void

    public init(loop: EventLoop, signal: Int32, _ action: @escaping () -> Void) {
        self.action = action
        event = event_new(loop.base, signal, Int16(EV_SIGNAL | EV_PERSIST), signalTrampoline,
                          Unmanaged.passUnretained(self).toOpaque())
        event_add(event, nil)
    }

    public func cancel() { if let e = event { event_del(e) } }

    deinit { if let e = event { event_free(e) } }

    fileprivate func fire() { action() }
}

private func signalTrampoline(_ fd: Int32, _ what: Int16, _ arg: UnsafeMutableRawPointer?) {
    Unmanaged<SignalWatcher>.fromOpaque(arg!).takeUnretainedValue().fire()
}

/// Work to run once at the end of the current loop pass, after every event that is already ready:
/// e.g. one write carrying the requests of all the clients that were readable in this pass.
public final class DeferredTask {
    private var event: OpaquePointer?
    private let action: () -> Void
    public private(set) var isScheduled = false

    public init(loop: EventLoop, _ action: @escaping () -> Void) {
        self.action = action
        event = event_new(loop.base, -1, 0, deferredTrampoline, Unmanaged.passUnretained(self).toOpaque())
    }

    /// Schedules the task (once, however often this is called before it runs).
    public func schedule() {
        guard !isScheduled, let e = event else { return }
        isScheduled = true
        // Activated events join the tail of the active queue, behind this pass's ready sockets.
        event_active(e, 0, 0)
    }

    deinit { if let e = event { event_free(e) } }

    fileprivate func fire() {
        isScheduled = false
        action()
    }
}

private func deferredTrampoline(_ fd: Int32, _ what: Int16, _ arg: UnsafeMutableRawPointer?) {
    Unmanaged<DeferredTask>.fromOpaque(arg!).takeUnretainedValue().fire()
}
