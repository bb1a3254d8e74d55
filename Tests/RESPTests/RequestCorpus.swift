@testable import RESP

/// A valid request and what the parser must make of it, built independently of the parser.
struct RequestCase {
    var bytes: [UInt8]
    var expected: ParsedRequest
}

func asciiLowercased(_ bytes: [UInt8]) -> [UInt8] {
    bytes.map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }
}

/// `*<n>\r\n$<len>\r\n<arg>\r\n…`, as every client library sends it.
func multibulk(_ args: [[UInt8]]) -> RequestCase {
    var bytes = Array("*\(args.count)\r\n")
    for a in args { bytes += Array("$\(a.count)\r\n") + a + Array("\r\n") }
    return RequestCase(bytes: bytes, expected: ParsedRequest(
        length: bytes.count, name: CommandName(asciiLowercased(args.first ?? [])), args: args,
        isEmpty: args.isEmpty, isInline: false))
}

func multibulk(_ args: String...) -> RequestCase { multibulk(args.map { Array($0) }) }

/// An inline line and the arguments Redis splits it into (written out by hand from the rules
/// of sdssplitargs, and checked against redis-server in RedisConformanceTests).
func inline(_ line: String, _ args: [String]) -> RequestCase {
    inline(Array(line), args.map { Array($0) })
}

func inline(_ line: [UInt8], _ args: [[UInt8]]) -> RequestCase {
    RequestCase(bytes: line, expected: ParsedRequest(
        length: line.count, name: CommandName(asciiLowercased(args.first ?? [])), args: args,
        isEmpty: args.isEmpty, isInline: !args.isEmpty))
}

/// A request with odd but valid framing: bytes, and the arguments Redis sees.
func oddMultibulk(_ bytes: String, _ args: [String]) -> RequestCase {
    RequestCase(bytes: Array(bytes), expected: ParsedRequest(
        length: bytes.utf8.count, name: CommandName(asciiLowercased(Array(args.first ?? ""))),
        args: args.map { Array($0) }, isEmpty: args.isEmpty, isInline: false))
}

/// Small valid requests of every kind; a pipeline of all of them is split every way.
func requestCorpus() -> [RequestCase] {
    var rng = SeededRandom(seed: 7)
    var cases: [RequestCase] = [
        multibulk("GET", "key"),
        multibulk("set", "k", "v"),
        multibulk("PiNg"),
        multibulk(""),                                  // empty command name
        multibulk("ECHO", ""),
        multibulk("ECHO", "a\r\nb\r\n*1\r\n$3\r\n"),   // framing bytes inside a payload
        multibulk([Array("SET"), Array("bin"), [0, 0x0D, 0xFF, 0x0A, 0x80, 0]]),
        multibulk(String(repeating: "X", count: 32), "exactly capacity"),
        multibulk(String(repeating: "LongName", count: 5), "too long for inline storage"),
        multibulk((0..<40).map { "arg\($0)" }.map { Array($0) }),
        multibulk([Array("SET"), Array("k"), rng.bytes(300)]),
        multibulk([String]().map { Array($0) }),       // *0
        oddMultibulk("*-1\r\n", []),
        oddMultibulk("*-5\r\n", []),
        // Redis skips the two bytes after a payload without looking at them,
        // and takes any byte after a length line's '\r' as its end.
        oddMultibulk("*1\r\n$4\r\nPINGxy", ["PING"]),
        oddMultibulk("*2\rx$4\ryECHO\r\n$1\r\na\r\n", ["ECHO", "a"]),
        oddMultibulk("*1\r\n$3\r\n\r\n\r\r\n", ["\r\n\r"]),
        inline("PING\r\n", ["PING"]),
        inline("PING\n", ["PING"]),
        inline("set  key   value\n", ["set", "key", "value"]),
        inline("\tECHO\t x \r\n", ["ECHO", "x"]),
        inline("SET k \"a b\"\r\n", ["SET", "k", "a b"]),
        inline("ECHO \"\\x41\\x4a\\x4Z\"\r\n", ["ECHO", "AJx4Z"]),
        inline("ECHO \"a\\nb\\tc\\rd\\be\\af\\\\g\\\"h\\q\"\r\n", ["ECHO", "a\nb\tc\rd\u{8}e\u{7}f\\g\"hq"]),
        inline("ECHO 'it\\'s' 'a\\nb'\r\n", ["ECHO", "it's", "a\\nb"]),
        inline("ECHO ab\"cd ef\"\r\n", ["ECHO", "abcd ef"]),
        inline("ECHO \"\" ''\r\n", ["ECHO", "", ""]),
        inline("ECHO a\rb\r\n", ["ECHO", "a", "b"]),           // a lone CR separates
        inline("ECHO \"a\rb\"\r\n", ["ECHO", "a\rb"]),          // but not inside quotes
        inline("ECHO\u{0B}x \u{0B}y\u{0C}\r\n", ["ECHO\u{0B}x", "y\u{0C}"]), // \v \f skipped only between args
        inline("ECHO x\r\r\n", ["ECHO", "x"]),
        inline("ECHO \u{e9}t\u{e9}\r\n", ["ECHO", "\u{e9}t\u{e9}"]),
        inline("\r\n", []),
        inline("\n", []),
        inline("   \t \r\n", []),
        inline("\r\r\n", []),
    ]
    for _ in 0..<8 {
        let argc = Int.random(in: 1...6, using: &rng)
        cases.append(multibulk((0..<argc).map { _ in rng.bytes(Int.random(in: 0...40, using: &rng)) }))
    }
    return cases
}

func concatenate(_ cases: [RequestCase]) -> (bytes: [UInt8], expected: [ParsedRequest]) {
    (cases.flatMap(\.bytes), cases.map(\.expected))
}
