import Foundation
import Glibc

/// Repository root, found from this file's path (tests run from anywhere).
let repoRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<4 { url.deleteLastPathComponent() }
    return url.path
}()

/// A child process the tests started (a Python server), stopped by `stop()` or at deinit.
final class ChildProcess {
    let process = Process()
    private let stdoutPipe = Pipe()
    private var buffered = [UInt8]()

    /// `stderrPath`: where the child's stderr goes (nil: inherited). A child that outlives a crashed
    /// test process must not hold the test runner's pipes open.
    init(_ args: [String], executable: String = "/usr/bin/env", env: [String: String] = [:], cwd: String? = nil,
         stderrPath: String? = nil) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = args
        if let d = cwd { process.currentDirectoryURL = URL(fileURLWithPath: d) }
        var e = ProcessInfo.processInfo.environment
        for (k, v) in env { e[k] = v }
        process.environment = e
        process.standardOutput = stdoutPipe
        if let path = stderrPath {
            FileManager.default.createFile(atPath: path, contents: nil)
            process.standardError = FileHandle(forWritingAtPath: path)
        } else {
            process.standardError = FileHandle.standardError
        }
        try process.run()
        registerForCleanup(process.processIdentifier)
    }

    /// Reads stdout lines until one starts with `prefix`, within `timeoutMillis`.
    func waitForLine(prefix: String, timeoutMillis: Int = 15_000) -> String? {
        let fd = stdoutPipe.fileHandleForReading.fileDescriptor
        let deadline = Date().addingTimeInterval(Double(timeoutMillis) / 1000)
        while Date() < deadline {
            while let nl = buffered.firstIndex(of: 10) {
                let line = String(decoding: buffered[..<nl], as: UTF8.self)
                buffered.removeSubrange(...nl)
                if line.hasPrefix(prefix) { return line }
            }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let left = Int32(max(1, deadline.timeIntervalSinceNow * 1000))
            if poll(&p, 1, min(left, 200)) > 0 {
                var chunk = [UInt8](repeating: 0, count: 4096)
                let n = read(fd, &chunk, chunk.count)
                if n <= 0 { return nil }
                buffered.append(contentsOf: chunk[..<n])
            }
            if !process.isRunning { return nil }
        }
        return nil
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}

/// Runs `python3 -c code` and returns (exit status, stdout, stderr).
@discardableResult
func runPython(_ code: String, env: [String: String] = [:], args: [String] = []) -> (Int32, String, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", "-c", code] + args
    var e = ProcessInfo.processInfo.environment
    for (k, v) in env { e[k] = v }
    p.environment = e
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    do { try p.run() } catch { return (-1, "", "\(error)") }
    // Read both pipes before waiting so a chatty child cannot block on a full pipe.
    final class Box: @unchecked Sendable { var data = Data() }
    let errBox = Box()
    let done = DispatchSemaphore(value: 0)
    let errHandle = err.fileHandleForReading
    Thread { errBox.data = errHandle.readDataToEndOfFile(); done.signal() }.start()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    done.wait()
    return (p.terminationStatus, String(decoding: outData, as: UTF8.self),
            String(decoding: errBox.data, as: UTF8.self))
}

/// The HTTP test fixture (Tests/fixtures/http_fixture.py) on a free loopback port.
final class HTTPFixture {
    let child: ChildProcess
    let port: Int
    var base: String { "http://127.0.0.1:\(port)" }

    init() throws {
        child = try ChildProcess(["python3", repoRoot + "/Tests/fixtures/orphan_guard.py",
                                  repoRoot + "/Tests/fixtures/http_fixture.py", "0"],
                                 stderrPath: "/tmp/tierproxy-http-fixture-\(getpid()).log")
        guard let line = child.waitForLine(prefix: "PORT"), let p = Int(line.split(separator: " ")[1]) else {
            throw NSError(domain: "HTTPFixture", code: 1, userInfo: [NSLocalizedDescriptionKey: "fixture did not start"])
        }
        port = p
    }

    func stop() { child.stop() }
}

/// Children still running when the test process exits are sent SIGTERM (shared emulators live
/// in statics, which never deinit).
nonisolated(unsafe) private var cleanupPIDs = [pid_t]()
nonisolated(unsafe) private var cleanupRegistered = false
private func registerForCleanup(_ pid: pid_t) {
    cleanupPIDs.append(pid)
    if !cleanupRegistered {
        cleanupRegistered = true
        atexit { for p in cleanupPIDs { kill(p, SIGKILL) } }
    }
}
