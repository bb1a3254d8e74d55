import CLibevent

/// A counter shared by every loop (e.g. connected clients against `maxclients`).
public final class AtomicCounter: @unchecked Sendable {
    private let cell = UnsafeMutablePointer<Int>.allocate(capacity: 1)

    public init(_ value: Int = 0) { cell.initialize(to: value) }
    deinit { cell.deallocate() }

    /// Adds `delta` and returns the new value.
    @discardableResult
    public func add(_ delta: Int) -> Int { tp_atomic_add(cell, delta) }
    public var value: Int { tp_atomic_load(cell) }
}
