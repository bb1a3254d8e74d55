import Synchronization

/// Which names a tier may hold: a Bloom filter of every name it held when this process started
/// (a walk of the tier) and every name this process has begun to write there since. "No" is
/// exact, so a write that puts a key in one tier can skip the delete in another that answers
/// "no" for it: a SET of a new key then costs the directory tier no `unlink` and no worker
/// wake-up. "Yes" may be wrong (a deleted name, a false positive) and only costs that delete.
///
/// Until the walk has finished every answer is "yes". Another process writing the same tier is
/// not seen (as with `AbsentBelow`). Fixed size: past a few million names the filter fills and
/// answers "yes" more often, which costs deletes, never correctness.
final class PresenceFilter: @unchecked Sendable {
    private struct State {
        var words: [UInt64]
        var ready = false
    }

    private let state: Mutex<State>
    private let wordMask: UInt64

    /// `bits`: rounded up to a power of two, at least 64 (2^24 bits: 2 MB, under 0.5% false
    /// positives at a million names).
    init(bits: Int = 1 << 24) {
        var size = 64
        while size < bits { size <<= 1 }
        wordMask = UInt64(size / 64 - 1)
        state = Mutex(State(words: [UInt64](repeating: 0, count: size / 64)))
    }

    /// Notes a name by its 64-bit hash. Call before the write that may create it begins.
    func insert(_ hash: UInt64) {
        let (word, bits) = slot(hash)
        state.withLock { $0.words[word] |= bits }
    }

    /// False only when the tier holds no name with this hash.
    func mayContain(_ hash: UInt64) -> Bool {
        let (word, bits) = slot(hash)
        return state.withLock { s in !s.ready || s.words[word] & bits == bits }
    }

    /// Every name the tier held at the start has been inserted: "no" answers may begin.
    func markReady() { state.withLock { $0.ready = true } }

    var isReady: Bool { state.withLock { $0.ready } }

    /// A name's bits all lie in one 64-bit word (a blocked Bloom filter: one cache miss per
    /// question, not one per bit), four of them, from a mixed hash: the name hashes are FNV-1a,
    /// whose low bits alone are weak.
    private func slot(_ hash: UInt64) -> (Int, UInt64) {
        let a = Self.mix(hash), b = Self.mix(a)
        var bits: UInt64 = 0
        for i in 0..<4 { bits |= 1 << ((b >> (6 * UInt64(i))) & 63) }
        return (Int(a & wordMask), bits)
    }

    /// splitmix64's finaliser.
    private static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
