@testable import RESP

/// A RESP2/RESP3 value, encoded by the tests themselves so that expected boundaries and
/// types never come from the scanner under test.
indirect enum Value {
    case simple(String), error(String), integer(Int), bulk([UInt8]?), array([Value]?)
    case null, double(String), boolean(Bool), blobError([UInt8]), verbatim([UInt8]), bigNumber(String)
    case map([(Value, Value)]), set([Value]), push([Value])
    case attributed([(Value, Value)], Value)

    var encoded: [UInt8] {
        switch self {
        case .simple(let s): return Array("+\(s)\r\n")
        case .error(let s): return Array("-\(s)\r\n")
        case .integer(let i): return Array(":\(i)\r\n")
        case .bulk(nil): return Array("$-1\r\n")
        case .bulk(let b?): return Array("$\(b.count)\r\n") + b + Array("\r\n")
        case .array(nil): return Array("*-1\r\n")
        case .array(let items?): return Array("*\(items.count)\r\n") + items.flatMap(\.encoded)
        case .null: return Array("_\r\n")
        case .double(let d): return Array(",\(d)\r\n")
        case .boolean(let b): return Array("#\(b ? "t" : "f")\r\n")
        case .blobError(let b): return Array("!\(b.count)\r\n") + b + Array("\r\n")
        case .verbatim(let b): return Array("=\(b.count + 4)\r\ntxt:") + b + Array("\r\n")
        case .bigNumber(let n): return Array("(\(n)\r\n")
        case .map(let pairs): return Array("%\(pairs.count)\r\n") + pairs.flatMap { $0.0.encoded + $0.1.encoded }
        case .set(let items): return Array("~\(items.count)\r\n") + items.flatMap(\.encoded)
        case .push(let items): return Array(">\(items.count)\r\n") + items.flatMap(\.encoded)
        case .attributed(let pairs, let v):
            return Array("|\(pairs.count)\r\n") + pairs.flatMap { $0.0.encoded + $0.1.encoded } + v.encoded
        }
    }

    /// What the scanner must say of this value as a top-level reply ending at `end`.
    func expected(end: Int) -> ScannedReply {
        switch self {
        case .attributed(_, let v): return v.expected(end: end)
        default: break
        }
        let type = encoded[0]
        var isNull = false
        switch self {
        case .bulk(nil), .array(nil), .null: isNull = true
        default: break
        }
        return ScannedReply(end: end, type: type, isNull: isNull, isPush: type == UInt8(ascii: ">"),
                            isError: type == UInt8(ascii: "-") || type == UInt8(ascii: "!"))
    }
}

func randomText(_ rng: inout SeededRandom) -> String {
    let pieces = ["OK", "ERR wrong", "a\rb", "", "WRONGTYPE x", "é", "\r"]
    return (0..<Int.random(in: 0...3, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined()
        .replacingCR()
}

extension String {
    /// A simple string may hold a lone CR but never CR LF; keep the generator honest.
    func replacingCR() -> String { hasSuffix("\r") ? self + "x" : self }
}

func randomPayload(_ rng: inout SeededRandom) -> [UInt8] {
    switch Int.random(in: 0...5, using: &rng) {
    case 0: return []
    case 1: return Array("\r\n")
    case 2: return Array("*1\r\n$3\r\n")
    default: return rng.bytes(Int.random(in: 0...30, using: &rng))
    }
}

/// A random value; `resp3: false` keeps to what hiredis 0.14.1 understands, and depth stays
/// within its limit of 7 nested aggregates.
func randomValue(_ rng: inout SeededRandom, depth: Int = 0, resp3: Bool) -> Value {
    let aggregates = depth < 5
    let kinds = resp3 ? 15 : 5
    switch Int.random(in: 0..<kinds, using: &rng) {
    case 0: return .simple(randomText(&rng))
    case 1: return .error(randomText(&rng))
    case 2: return .integer(Int.random(in: Int.min...Int.max, using: &rng) >> Int.random(in: 0...63, using: &rng))
    case 3: return Bool.random(using: &rng) && Int.random(in: 0...4, using: &rng) == 0 ? .bulk(nil) : .bulk(randomPayload(&rng))
    case 4:
        guard aggregates, Int.random(in: 0...5, using: &rng) != 0 else { return .array(nil) }
        return .array((0..<Int.random(in: 0...4, using: &rng)).map { _ in randomValue(&rng, depth: depth + 1, resp3: resp3) })
    case 5: return .null
    case 6: return .double(["1.5", "-0", "inf", "-inf", "nan", "3e10"].randomElement(using: &rng)!)
    case 7: return .boolean(Bool.random(using: &rng))
    case 8: return .blobError(Array("SYNTAX ") + randomPayload(&rng))
    case 9: return .verbatim(randomPayload(&rng))
    case 10: return .bigNumber(["0", "-1", "3492890328409238509324850943850943825024385"].randomElement(using: &rng)!)
    case 11:
        guard aggregates else { return .null }
        return .map((0..<Int.random(in: 0...3, using: &rng)).map { _ in
            (randomValue(&rng, depth: depth + 1, resp3: true), randomValue(&rng, depth: depth + 1, resp3: true)) })
    case 12:
        guard aggregates else { return .boolean(true) }
        return .set((0..<Int.random(in: 0...3, using: &rng)).map { _ in randomValue(&rng, depth: depth + 1, resp3: true) })
    case 13:
        guard aggregates else { return .integer(0) }
        return .push((0..<Int.random(in: 0...3, using: &rng)).map { _ in randomValue(&rng, depth: depth + 1, resp3: true) })
    default:
        guard aggregates else { return .double("0.5") }
        let pairs = (0..<Int.random(in: 0...2, using: &rng)).map { _ in
            (randomValue(&rng, depth: depth + 1, resp3: true), randomValue(&rng, depth: depth + 1, resp3: true)) }
        return .attributed(pairs, randomValue(&rng, depth: depth + 1, resp3: true))
    }
}

/// Hand-picked replies covering every type, nulls, empties, nesting and attributes.
func replyCorpus() -> [Value] {
    [
        .simple("OK"), .simple(""), .simple("with\ra lone CR"), .error("ERR unknown command"),
        .integer(0), .integer(-9_223_372_036_854_775_807), .integer(Int.max),
        .bulk(nil), .bulk([]), .bulk(Array("foobar")), .bulk(Array("\r\n$3\r\n")),
        .array(nil), .array([]), .array([.bulk(Array("a")), .bulk(nil), .integer(1)]),
        .array([.array([.array([.array([.array([.array([.array([])])])])])])]),
        .null, .double("3.14"), .double("-inf"), .boolean(true), .boolean(false),
        .blobError(Array("SYNTAX invalid syntax")), .blobError([]), .verbatim(Array("Some string")),
        .bigNumber("3492890328409238509324850943850943825024385"), .bigNumber("-1"),
        .map([]), .map([(.simple("first"), .integer(1)), (.bulk(Array("second")), .array([.null]))]),
        .set([]), .set([.simple("orange"), .simple("apple"), .boolean(true)]),
        .push([.bulk(Array("message")), .bulk(Array("chan")), .bulk(Array("hello"))]),
        .attributed([(.simple("key-popularity"), .map([(.bulk(Array("a")), .double("0.19"))]))],
                    .array([.integer(2039123), .integer(9543892)])),
        .attributed([], .simple("OK")),
        .attributed([(.simple("k"), .simple("v"))], .attributed([(.simple("k2"), .null)], .bulk(nil))),
        .array([.attributed([(.simple("ttl"), .integer(3600))], .integer(1)), .push([.null])]),
        .attributed([(.simple("a"), .simple("b"))], .push([.simple("invalidate")])),
        .attributed([(.simple("a"), .simple("b"))], .error("ERR in attribute")),
        .map([(.set([.map([])]), .attributed([(.null, .null)], .array(nil)))]),
    ]
}

func replyStream(_ values: [Value]) -> (bytes: [UInt8], expected: [ScannedReply]) {
    var bytes: [UInt8] = []
    var expected: [ScannedReply] = []
    for v in values {
        bytes += v.encoded
        expected.append(v.expected(end: bytes.count))
    }
    return (bytes, expected)
}
