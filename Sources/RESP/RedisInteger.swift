/// Redis's `string2ll` (src/util.c) taken one byte at a time, so that a length line split
/// across two segments needs no copy: the same strings are accepted and rejected.
struct RedisInteger {
    /// Digits and sign seen so far (Redis's `slen`).
    private(set) var count = 0
    private var negative = false
    private var magnitude: UInt64 = 0
    /// Cleared by the first byte that makes the string invalid whatever follows.
    private var valid = true
    private var leadingZero = false

    /// Redis's LONG_STR_SIZE: strings this long or longer are never numbers.
    static let maxLength = 21

    mutating func reset() { self = RedisInteger() }

    mutating func add(_ c: UInt8) {
        let index = count
        count = index &+ 1
        guard valid else { return }
        let digit = c &- 0x30
        if index == 0 {
            if c == 0x2D { negative = true; return }   // '-'
            if digit == 0 { leadingZero = true; return }
            if digit < 10 { magnitude = UInt64(digit); return }
            valid = false
            return
        }
        if leadingZero { valid = false; return }        // "0" must stand alone
        if index == 1 && negative {
            if digit >= 1 && digit < 10 { magnitude = UInt64(digit) } else { valid = false }
            return
        }
        guard digit < 10, count < RedisInteger.maxLength else { valid = false; return }
        let (m, o1) = magnitude.multipliedReportingOverflow(by: 10)
        let (s, o2) = m.addingReportingOverflow(UInt64(digit))
        if o1 || o2 { valid = false } else { magnitude = s }
    }

    /// The value, or nil where Redis's `string2ll` returns 0.
    var value: Int64? {
        guard valid, count > 0, count < RedisInteger.maxLength else { return nil }
        if leadingZero { return count == 1 ? 0 : nil }
        if negative {
            if count == 1 { return nil }
            if magnitude > UInt64(Int64.max) + 1 { return nil }
            return magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
        }
        return magnitude > UInt64(Int64.max) ? nil : Int64(magnitude)
    }
}
