import Testing
import Glibc
@testable import Reactor

/// Runs `body` on a fresh loop thread and waits (with a deadline) for it to call `finish`.
private func onLoop(timeoutSeconds: Int = 10, _ body: @escaping (EventLoop, @escaping () -> Void) -> Void) -> Bool {
    let done = AtomicCounter()
    let thread = LoopThread(name: "test") { loop in
        body(loop) { done.add(1); loop.stop() }
    }
    let deadline = time(nil) + timeoutSeconds
    while done.value == 0 && time(nil) < deadline { usleep(1000) }
    if done.value == 0 { thread.loop.execute { thread.loop.stop() } }
    thread.join()
    return done.value == 1
}

/// Echoes whatever arrives, and collects what the client side receives.
private final class Echo: ConnectionDelegate {
    var received = [UInt8]()
    var onData: (() -> Void)?
    var closed = false
    func connectionReadable(_ c: Connection) {
        if c.delegate === self && role == .server {
            c.input.moveAll(to: c.output)
            c.flush()
        } else {
            received += c.input.copy(c.input.count)
            c.input.drain(c.input.count)
            onData?()
        }
    }
    func connectionDrained(_ c: Connection) { drained += 1 }
    func connectionEstablished(_ c: Connection) { established = true }
    func connectionClosed(_ c: Connection, error: String?) { closed = true }
    enum Role { case server, client }
    let role: Role
    var drained = 0
    var established = false
    init(_ role: Role) { self.role = role }
}

@Suite struct ReactorTests {
    @Test func listenerAndConnectionsRoundTripLargePayloads() throws {
        let payload = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var got = [UInt8]()
        let ok = onLoop { loop, finish in
            let addr = try! SocketAddress.resolve(host: "127.0.0.1", port: 0, passive: true)[0]
            var servers: [Connection] = []
            let serverSide = Echo(.server)
            // Port 0: find the port the kernel chose through a second resolve of the bound socket.
            let listener = try! Listener(loop: loop, address: addr, reusePort: false) { fd in
                let c = Connection(loop: loop, fd: fd)
                c.delegate = serverSide
                servers.append(c)
            }
            let port = listener.boundPort
            let target = try! SocketAddress.resolve(host: "127.0.0.1", port: port)[0]
            let clientSide = Echo(.client)
            let client = Connection(loop: loop, connectingTo: target)
            client.delegate = clientSide
            client.output.append(payload)      // queued before the connection completes
            clientSide.onData = {
                if clientSide.received.count >= payload.count {
                    got = clientSide.received
                    withExtendedLifetime((listener, servers, client)) { finish() }
                }
            }
        }
        #expect(ok)
        #expect(got == payload)
    }

    @Test func timersFireInOrderAndCancelledOnesDoNot() {
        var order = [Int]()
        let ok = onLoop { loop, finish in
            var keep: [Timer] = []
            keep.append(Timer(loop: loop, millis: 30) { order.append(2) })
            keep.append(Timer(loop: loop, millis: 10) { order.append(1) })
            let cancelled = Timer(loop: loop, millis: 20) { order.append(99) }
            cancelled.cancel()
            keep.append(Timer(loop: loop, millis: 60) { withExtendedLifetime((keep, cancelled)) { finish() } })
        }
        #expect(ok)
        #expect(order == [1, 2])
    }

    @Test func deferredTaskRunsOnceAfterTheCurrentPass() {
        var runs = 0
        var sawScheduledInsidePass = false
        let ok = onLoop { loop, finish in
            let task = DeferredTask(loop: loop) { runs += 1 }
            loop.execute {
                task.schedule(); task.schedule(); task.schedule()
                sawScheduledInsidePass = task.isScheduled && runs == 0
            }
            let end = Timer(loop: loop, millis: 50) { withExtendedLifetime(task) { finish() } }
            keepAlive.append(task)
            keepAlive.append(end)
        }
        #expect(ok)
        #expect(sawScheduledInsidePass)
        #expect(runs == 1)
    }

    @Test func executeFromOtherThreadsRunsEverythingOnTheLoop() {
        let total = AtomicCounter()
        var loopThreadRuns = 0
        let thread = LoopThread(name: "exec") { _ in }
        var producers: [pthread_t] = []
        final class Box { let loop: EventLoop; let body: () -> Void; init(_ l: EventLoop, _ b: @escaping () -> Void) { loop = l; body = b } }
        for _ in 0..<4 {
            let box = Unmanaged.passRetained(Box(thread.loop) { loopThreadRuns += 1; total.add(1) }).toOpaque()
            var t = pthread_t()
            pthread_create(&t, nil, { arg in
                let b = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
                for _ in 0..<1000 { b.loop.execute(b.body) }
                return nil
            }, box)
            producers.append(t)
        }
        for t in producers { pthread_join(t, nil) }
        let deadline = time(nil) + 10
        while total.value < 4000 && time(nil) < deadline { usleep(1000) }
        thread.loop.execute { thread.loop.stop() }
        thread.join()
        #expect(total.value == 4000)
        #expect(loopThreadRuns == 4000)   // a plain Int touched only by the loop thread
    }
}

nonisolated(unsafe) private var keepAlive: [AnyObject] = []
