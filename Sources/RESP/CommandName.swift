/// A command's first argument, ASCII-lowercased, held inline (no allocation) for table look-ups.
///
/// Names of up to `CommandName.capacity` bytes are stored whole; a longer name keeps only its
/// length and first bytes and reports `isTooLong` (no Redis command is that long, so it can
/// never match a table entry built from a real command name).
public struct CommandName: Hashable, Sendable, CustomStringConvertible {
    public static let capacity = 32

    var w0: UInt64 = 0
    var w1: UInt64 = 0
    var w2: UInt64 = 0
    var w3: UInt64 = 0
    /// Length of the original argument in bytes (it may exceed `capacity`).
    public private(set) var length: Int = 0

    public init() {}

    public init(_ s: StaticString) {
        self.init()
        s.withUTF8Buffer { self = CommandName(bytes: UnsafeRawBufferPointer($0)) }
    }

    public init(_ s: String) {
        var copy = s
        self = copy.withUTF8 { CommandName(bytes: UnsafeRawBufferPointer($0)) }
    }

    public init<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        self.init()
        length = bytes.count
        var i = 0
        for b in bytes {
            if i == CommandName.capacity { break }
            setByte(i, b)
            i += 1
        }
    }

    public init(bytes: UnsafeRawBufferPointer) {
        self.init()
        length = bytes.count
        let n = Swift.min(bytes.count, CommandName.capacity)
        var i = 0
        while i < n {
            setByte(i, bytes[i])
            i += 1
        }
    }

    /// True when the argument was longer than `capacity` bytes.
    public var isTooLong: Bool { length > CommandName.capacity }

    public var isEmpty: Bool { length == 0 }

    /// The stored (lowercased) bytes; for a too-long name, only the first `capacity`.
    public var bytes: [UInt8] {
        let n = Swift.min(length, CommandName.capacity)
        var out = [UInt8]()
        out.reserveCapacity(n)
        for i in 0..<n { out.append(byte(at: i)) }
        return out
    }

    public var description: String {
        String(decoding: bytes, as: UTF8.self) + (isTooLong ? "…" : "")
    }

    func byte(at i: Int) -> UInt8 {
        let shift = UInt64((i & 7) << 3)
        switch i >> 3 {
        case 0: return UInt8(truncatingIfNeeded: w0 >> shift)
        case 1: return UInt8(truncatingIfNeeded: w1 >> shift)
        case 2: return UInt8(truncatingIfNeeded: w2 >> shift)
        default: return UInt8(truncatingIfNeeded: w3 >> shift)
        }
    }

    /// Stores byte `i` (< capacity) lowercased; the slot must still be zero.
    mutating func setByte(_ i: Int, _ b: UInt8) {
        // ASCII-only lowercasing, as Redis's strcasecmp look-up does in the C locale.
        let lower = (b &- 0x41) < 26 ? b | 0x20 : b
        let v = UInt64(lower) << UInt64((i & 7) << 3)
        switch i >> 3 {
        case 0: w0 |= v
        case 1: w1 |= v
        case 2: w2 |= v
        default: w3 |= v
        }
    }

    /// One word into the hasher instead of the five stored ones: names are looked up in a table
    /// for every request, and most fit in `w0`. (Equal names mix to equal words, as `==` needs.)
    public func hash(into hasher: inout Hasher) {
        hasher.combine(w0 ^ (w1 &* 0x9E37_79B9_7F4A_7C15) ^ (w2 &* 0xC2B2_AE3D_27D4_EB4F)
                       ^ (w3 &* 0x1656_67B1_9E37_79F9) ^ UInt64(truncatingIfNeeded: length) << 56)
    }

    /// Starts a name whose argument is `length` bytes long; bytes follow through `setByte`.
    mutating func start(length: Int) {
        self = CommandName()
        self.length = length
    }
}
