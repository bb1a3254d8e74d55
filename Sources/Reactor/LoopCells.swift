import CLibevent

/// A fixed set of counters written by one thread (their loop) and read by any (a /metrics scrape,
/// INFO on another loop). Each update is a relaxed load and store: on x86-64 and arm64 the same
/// two instructions as a plain `+=`, with no lock and no atomic read-modify-write, so the request
/// path pays nothing for being observable. Readers see each cell's latest or a slightly older
/// value, never a torn one. Only the owner loop may call `add`/`set`.
public final class LoopCells: @unchecked Sendable {
    private let cells: UnsafeMutablePointer<Int>
    public let count: Int

    public init(count: Int) {
        self.count = count
        cells = UnsafeMutablePointer<Int>.allocate(capacity: max(count, 1))
        cells.initialize(repeating: 0, count: max(count, 1))
    }
    deinit { cells.deallocate() }

    @inline(__always)
    public func add(_ index: Int, _ delta: Int = 1) {
        let p = cells + index
        tp_relaxed_store(p, tp_relaxed_load(p) &+ delta)
    }

    @inline(__always)
    public func set(_ index: Int, _ value: Int) { tp_relaxed_store(cells + index, value) }

    @inline(__always)
    public subscript(_ index: Int) -> Int { tp_relaxed_load(cells + index) }

    /// Every cell, in order (for sums across loops).
    public func values() -> [Int] { (0..<count).map { self[$0] } }
}
