import Glibc

/// Swift's crash reporter prints, beside the backtraces, each register of the crashed thread with
/// the 16 bytes it points at, in hex and as text. A crash while a password, a key or a token sits
/// in a buffer a register points to would print part of it; "no secret in crash output" needs
/// those dumps off. The runtime reads `SWIFT_BACKTRACE` once, before `main`, so the only way to set
/// it is the environment we start with: without a `registers` choice of the operator's own, the
/// proxy runs itself again at once (same pid, same arguments) with `registers=none` added.
/// Backtraces, thread names and image lists stay: they hold addresses and symbols, not data.
enum CrashReport {
    static let variable = "SWIFT_BACKTRACE"

    static func withoutMemoryDumps() {
        let current = getenv(variable).map { String(cString: $0) } ?? ""
        if current.split(separator: ",").contains(where: { $0.hasPrefix("registers=") }) { return }
        setenv(variable, current.isEmpty ? "registers=none" : current + ",registers=none", 1)
        // The binary's own path, not /proc/self/exe: that would rename the process "exe".
        var path = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &path, path.count - 1)
        var argv: [UnsafeMutablePointer<CChar>?] = CommandLine.arguments.map { strdup($0) }
        argv.append(nil)
        if n > 0 { execv(path, &argv) }
        // exec failed (no /proc): carry on as we are; the reports keep their register dumps.
        unsetenv(variable)
        if !current.isEmpty { setenv(variable, current, 1) }
    }
}
