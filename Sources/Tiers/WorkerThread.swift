import Glibc
import Reactor

/// One plain pthread serving a FIFO of jobs that any thread may submit. The worker takes every
/// queued job at once (up to `maxBatch`), which is what lets SQLite commit a whole batch in one
/// transaction. Blocking work (SQLite, file I/O, fsync) lives here so no event loop ever waits on
/// a disk. No Foundation: this is on every request's path.
final class WorkerThread<Job> {
    private var mutex = pthread_mutex_t()
    private var wake = pthread_cond_t()
    private var queue = [Job]()
    private var stopping = false
    private var suspended = false
    private var batches = 0
    private var jobs = 0
    private var thread = pthread_t()
    private var started = false
    private let maxBatch: Int
    private let process: ([Job]) -> Void

    /// Starts the thread; `process` runs on it with each batch, in submission order. `name`
    /// (at most 15 bytes) is the thread's name in `top -H` and /proc, so its CPU can be told apart.
    init(name: String = "tp-worker", maxBatch: Int = 4096, process: @escaping ([Job]) -> Void) {
        self.maxBatch = maxBatch
        self.process = process
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&wake, nil)
        let threadName = String(name.utf8.prefix(15))!
        started = startThread(&thread) { [self] in
            nameCurrentThread(threadName)
            serve()
        }
    }

    deinit {
        pthread_cond_destroy(&wake)
        pthread_mutex_destroy(&mutex)
    }

    /// Queues `job`; false if the worker is stopping (the caller reports the failure itself).
    @discardableResult
    func submit(_ job: Job) -> Bool {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        guard !stopping, started else { return false }
        queue.append(job)
        if queue.count == 1 { pthread_cond_signal(&wake) }
        return true
    }

    /// Jobs waiting, for queue-depth metrics.
    var depth: Int {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return queue.count
    }

    /// Batches and jobs served so far (group-commit effectiveness, for stats and tests).
    var served: (batches: Int, jobs: Int) {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return (batches, jobs)
    }

    /// Holds the worker between batches until `resume()` (tests use it to queue a known batch).
    func suspend() {
        pthread_mutex_lock(&mutex)
        suspended = true
        pthread_mutex_unlock(&mutex)
    }

    func resume() {
        pthread_mutex_lock(&mutex)
        suspended = false
        pthread_cond_signal(&wake)
        pthread_mutex_unlock(&mutex)
    }

    /// Finishes every queued job, then ends the thread and waits for it. Idempotent.
    func stop() {
        pthread_mutex_lock(&mutex)
        let wasStopping = stopping
        stopping = true
        pthread_cond_signal(&wake)
        pthread_mutex_unlock(&mutex)
        // Never join from the worker itself (a job dropping the last reference to its owner).
        if !wasStopping && started && pthread_equal(pthread_self(), thread) == 0 { pthread_join(thread, nil) }
    }

    private func serve() {
        while true {
            pthread_mutex_lock(&mutex)
            while (queue.isEmpty || suspended) && !stopping { pthread_cond_wait(&wake, &mutex) }
            if queue.isEmpty {  // stopping and drained
                pthread_mutex_unlock(&mutex)
                return
            }
            let batch: [Job]
            if queue.count <= maxBatch {
                batch = queue
                queue.removeAll(keepingCapacity: true)
            } else {
                batch = Array(queue.prefix(maxBatch))
                queue.removeFirst(maxBatch)
            }
            batches += 1
            jobs += batch.count
            pthread_mutex_unlock(&mutex)
            process(batch)
            if workerLingerMicros > 0 { withExtendedLifetime(batch) { _ = usleep(workerLingerMicros) } }
        }
    }
}

/// Test hook: `TIERPROXY_TEST_WORKER_LINGER_MS` makes every worker hold a batch it has served
/// (its jobs and their closures) that long before dropping it, as a worker descheduled right
/// after handing its completions to the loops does on a loaded machine. Tests use it to show
/// that nothing a client sees depends on when a worker lets go of what a completion captured.
private let workerLingerMicros: UInt32 = {
    guard let raw = getenv("TIERPROXY_TEST_WORKER_LINGER_MS"), let ms = UInt32(String(cString: raw)) else { return 0 }
    return min(ms, 10_000) * 1000
}()

/// Collects completions by loop during a batch and hands each loop its share in one `execute`,
/// so a batch of 64 completions costs one wake-up per loop, not 64.
struct CompletionBatch {
    private var loops = [EventLoop]()
    private var work = [[() -> Void]]()

    mutating func add(_ loop: EventLoop, _ completion: @escaping () -> Void) {
        // Linear search: a batch touches a handful of loops (one per core).
        if let i = loops.firstIndex(where: { $0 === loop }) {
            work[i].append(completion)
        } else {
            loops.append(loop)
            work.append([completion])
        }
    }

    func deliver() {
        for (loop, completions) in zip(loops, work) {
            loop.execute { for c in completions { c() } }
        }
    }
}

/// Wall-clock Unix milliseconds, read from the clock: on worker threads (the loop's cached clock is
/// not theirs), and wherever an expiry must be exact.
public func wallClockMillis() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// What a new pthread runs; a class so it can cross the C boundary as one pointer
/// (C function pointers cannot capture, and generic types cannot form them).
private final class ThreadStart {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

/// Starts a joinable pthread running `body`; false if the system refused.
func startThread(_ thread: inout pthread_t, _ body: @escaping () -> Void) -> Bool {
    let box = Unmanaged.passRetained(ThreadStart(body)).toOpaque()
    let rc = pthread_create(&thread, nil, { arg in
        Unmanaged<ThreadStart>.fromOpaque(arg!).takeRetainedValue().body()
        return nil
    }, box)
    if rc != 0 { Unmanaged<ThreadStart>.fromOpaque(box).release() }
    return rc == 0
}
