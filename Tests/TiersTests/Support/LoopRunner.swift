import Reactor

/// Runs `loop` until the test calls `finish` or `timeoutMillis` passes; returns whether it finished.
@discardableResult
func runLoop(_ loop: EventLoop, timeoutMillis: Int = 20_000, _ body: (@escaping () -> Void) -> Void) -> Bool {
    var finished = false
    let guardTimer = Reactor.Timer(loop: loop, millis: timeoutMillis) { loop.stop() }
    body {
        finished = true
        loop.stop()
    }
    if !finished { loop.run() }
    guardTimer.cancel()
    return finished
}
