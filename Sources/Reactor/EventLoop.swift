import CLibevent
import Glibc

/// One libevent `event_base`, driven by one thread. Everything registered on a loop is touched only
/// from that loop's thread, except `execute`, which any thread may call.
public final class EventLoop {
    let base: OpaquePointer
    private var wakeEvent: OpaquePointer?
    private let wakeFD: Int32
    private var inbox = [() -> Void]()
    private var inboxLock = pthread_mutex_t()
    private var wakePending = false
    /// Set while `run()` is on the stack (tests wait for it before handing the loop work).
    public private(set) var isRunning = false

    public init() {
        // No libevent locks: one thread owns the base, and cross-thread work comes through `execute`.
        let cfg = event_config_new()
        event_config_set_flag(cfg, Int32(EVENT_BASE_FLAG_NOLOCK.rawValue))
        base = event_base_new_with_config(cfg)!
        event_config_free(cfg)
        pthread_mutex_init(&inboxLock, nil)
        wakeFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        wakeEvent = event_new(base, wakeFD, Int16(EV_READ | EV_PERSIST), loopWakeTrampoline,
                              Unmanaged.passUnretained(self).toOpaque())
        event_add(wakeEvent, nil)
    }

    deinit {
        if let e = wakeEvent { event_free(e) }
        close(wakeFD)
        event_base_free(base)
        pthread_mutex_destroy(&inboxLock)
    }

    /// Runs until `stop()`; returns when the loop has no more work or was stopped.
    public func run() {
        isRunning = true
        event_base_loop(base, 0)
        isRunning = false
    }

    /// Runs what is ready now (deferred tasks, `execute`d work, ready events) without waiting,
    /// then returns: how a test drives a loop it does not give a thread.
    public func runPending() {
        event_base_loop(base, Int32(EVLOOP_NONBLOCK))
    }

    /// Stops `run()` after the current callbacks. Call from the loop's own thread (or via `execute`).
    public func stop() { event_base_loopbreak(base) }

    /// Runs `work` on this loop's thread, soon. Safe from any thread.
    public func execute(_ work: @escaping () -> Void) {
        pthread_mutex_lock(&inboxLock)
        inbox.append(work)
        let mustWake = !wakePending
        wakePending = true
        pthread_mutex_unlock(&inboxLock)
        if mustWake {
            var one: UInt64 = 1
            _ = write(wakeFD, &one, 8)
        }
    }

    fileprivate func drainInbox() {
        var counter: UInt64 = 0
        _ = read(wakeFD, &counter, 8)
        pthread_mutex_lock(&inboxLock)
        let work = inbox
        inbox.removeAll(keepingCapacity: true)
        wakePending = false
        pthread_mutex_unlock(&inboxLock)
        for item in work { item() }
    }

    /// Milliseconds on the loop's cached clock (cheap: no syscall inside a callback).
    public var nowMillis: Int64 {
        var tv = timeval()
        event_base_gettimeofday_cached(base, &tv)
        return Int64(tv.tv_sec) * 1000 + Int64(tv.tv_usec) / 1000
    }
}

private func loopWakeTrampoline(_ fd: Int32, _ what: Int16, _ arg: UnsafeMutableRawPointer?) {
    Unmanaged<EventLoop>.fromOpaque(arg!).takeUnretainedValue().drainInbox()
}

/// A thread that runs one `EventLoop` until it stops. Plain pthreads: Foundation stays out.
/// Build everything the loop needs (listeners, timers) before starting it, so that setup errors
/// surface on the caller's thread.
public final class LoopThread {
    public let loop: EventLoop
    private var thread = pthread_t()
    private let name: String
    private let body: ((EventLoop) -> Void)?

    /// Starts a thread running `loop`.
    public init(loop: EventLoop, name: String) {
        self.loop = loop
        self.name = String(name.prefix(15))
        self.body = nil
        start()
    }

    /// Starts a thread with a new loop; `body` runs on that thread before the loop starts.
    public init(name: String, body: @escaping (EventLoop) -> Void) {
        self.loop = EventLoop()
        self.name = String(name.prefix(15))
        self.body = body
        start()
    }

    private func start() {
        let box = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&thread, nil, { arg in
            let me = Unmanaged<LoopThread>.fromOpaque(arg!).takeRetainedValue()
            tp_set_thread_name(me.name)
            me.body?(me.loop)
            me.loop.run()
            return nil
        }, box)
    }

    /// Waits for the thread to finish.
    public func join() { pthread_join(thread, nil) }
}

/// Names the calling thread (at most 15 bytes show) for `top -H` and /proc, so each thread's
/// CPU can be told apart.
public func nameCurrentThread(_ name: String) { tp_set_thread_name(name) }
