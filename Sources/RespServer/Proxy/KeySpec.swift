import CHiredis

/// One key specification from the upstream's `COMMAND` reply (Redis 7): where a command's keys
/// start, how many there are, and what the command does with them. Evaluated as Redis's own
/// `getKeysUsingKeySpecs` does, so the proxy finds the keys of any command, scripts included
/// (`EVAL`'s keys come from its `numkeys` argument), without a hand-kept list.
struct KeySpec: Equatable {
    enum Begin: Equatable {
        case index(Int)
        /// The key follows `keyword`, searched from `startFrom` (negative: from the end, backwards).
        case keyword(String, startFrom: Int)
        /// Redis could not say (SORT's STORE, say): the command's own parser knows.
        case unknown
    }

    enum Find: Equatable {
        /// Keys up to `lastKey` past the first (negative: from the end), every `step`th; with
        /// `limit` > 1 and `lastKey` -1, the first 1/limit of the remaining arguments.
        case range(lastKey: Int, step: Int, limit: Int)
        /// The argument at `numKeysIndex` (relative to the first) says how many keys follow,
        /// starting `firstKey` past it.
        case keyNum(numKeysIndex: Int, firstKey: Int, step: Int)
        case unknown
    }

    let begin: Begin
    let find: Find
    /// RO, RW, OW, RM, access, update, insert, delete, not_key, incomplete, variable_flags.
    let flags: Set<String>

    /// The command reads the key's value or existence before it acts (RO, RW, RM: a remove
    /// answers whether the key existed). Stored, as `writes` and `isKey`: asked for every request.
    let reads: Bool
    /// The command may change or delete the key.
    let writes: Bool
    /// Not `not_key` (an argument that names a key but is not one, such as a channel).
    let isKey: Bool

    /// Argument indexes holding keys for `args` (name first), as Redis finds them; a spec that
    /// cannot be followed (unknown, a malformed `numkeys`) contributes nothing, and Redis's own
    /// reply will judge the request.
    func keyIndexes(_ args: [[UInt8]]) -> [Int] {
        let argc = args.count
        var first = 0
        switch begin {
        case .index(let pos):
            first = pos
        case .keyword(let word, let startFrom):
            let start = startFrom > 0 ? startFrom : argc + startFrom
            let forward = startFrom > 0
            var i = start
            while i >= 1 && i < argc {
                if asciiCaseEqual(args[i], word) { first = i + 1; break }
                i += forward ? 1 : -1
            }
            if first == 0 { return [] }
        case .unknown:
            return []
        }
        var last: Int
        var step: Int
        switch find {
        case .range(let lastKey, let s, let limit):
            step = s
            if lastKey >= 0 { last = first + lastKey }
            else if limit == 0 { last = argc + lastKey }
            else { last = first + ((argc - first) / limit + lastKey) }
        case .keyNum(let numKeysIndex, let firstKey, let s):
            step = s
            // A count beyond the arguments is Redis's to refuse ("Number of keys can't be greater
            // than number of args"); computing with it here could overflow.
            let at = first + numKeysIndex
            guard at >= 1, at < argc, let n = Int(String(decoding: args[at], as: UTF8.self)), n >= 0, n < argc else { return [] }
            first += firstKey
            last = first + n - 1
        case .unknown:
            return []
        }
        guard step > 0, first >= 1, first < argc, last < argc, last >= first else { return [] }
        return Array(stride(from: first, through: last, by: step))
    }

    /// Parses one spec: a flat map (RESP2 array of name, value pairs). Nil if it is not one.
    init?(reply e: redisReply) {
        guard e.type == REDIS_REPLY_ARRAY else { return nil }
        var flags = Set<String>()
        var begin = Begin.unknown
        var find = Find.unknown
        for (name, value) in pairs(e) {
            switch name {
            case "flags": flags = Set(strings(value))
            case "begin_search": begin = KeySpec.begin(value)
            case "find_keys": find = KeySpec.find(value)
            default: break
            }
        }
        self.init(begin: begin, find: find, flags: flags)
    }

    init(begin: Begin, find: Find, flags: Set<String>) {
        self.begin = begin
        self.find = find
        self.flags = flags
        reads = !flags.isDisjoint(with: ["RO", "RW", "RM", "access"])
        writes = !flags.isDisjoint(with: ["RW", "OW", "RM", "insert", "update", "delete"])
        isKey = !flags.contains("not_key")
    }

    private static func begin(_ r: redisReply) -> Begin {
        let m = Dictionary(pairs(r), uniquingKeysWith: { a, _ in a })
        guard let type = m["type"].flatMap(text), let spec = m["spec"] else { return .unknown }
        let s = Dictionary(pairs(spec), uniquingKeysWith: { a, _ in a })
        switch type {
        case "index":
            return s["index"].flatMap(smallInteger).map { .index($0) } ?? .unknown
        case "keyword":
            guard let word = s["keyword"].flatMap(text), let from = s["startfrom"].flatMap(smallInteger) else { return .unknown }
            return .keyword(word, startFrom: from)
        default:
            return .unknown
        }
    }

    private static func find(_ r: redisReply) -> Find {
        let m = Dictionary(pairs(r), uniquingKeysWith: { a, _ in a })
        guard let type = m["type"].flatMap(text), let spec = m["spec"] else { return .unknown }
        let s = Dictionary(pairs(spec), uniquingKeysWith: { a, _ in a })
        switch type {
        case "range":
            guard let last = s["lastkey"].flatMap(smallInteger), let step = s["keystep"].flatMap(smallInteger),
                  let limit = s["limit"].flatMap(smallInteger) else { return .unknown }
            return .range(lastKey: last, step: step, limit: limit)
        case "keynum":
            guard let idx = s["keynumidx"].flatMap(smallInteger), let first = s["firstkey"].flatMap(smallInteger),
                  let step = s["keystep"].flatMap(smallInteger) else { return .unknown }
            return .keyNum(numKeysIndex: idx, firstKey: first, step: step)
        default:
            return .unknown
        }
    }
}

// MARK: - Reading hiredis replies without trusting their shape

/// The (name, value) pairs of a flat map; elements that are not a name string are skipped.
func pairs(_ r: redisReply) -> [(String, redisReply)] {
    guard r.type == REDIS_REPLY_ARRAY, r.elements >= 2 else { return [] }
    var out: [(String, redisReply)] = []
    var i = 0
    while i + 1 < Int(r.elements) {
        if let k = r.element[i], let name = text(k.pointee), let v = r.element[i + 1] { out.append((name, v.pointee)) }
        i += 2
    }
    return out
}

/// A string or status reply's text; nil for any other type.
func text(_ r: redisReply) -> String? {
    guard r.type == REDIS_REPLY_STRING || r.type == REDIS_REPLY_STATUS, let s = r.str else { return nil }
    return String(cString: s)
}

func integer(_ r: redisReply) -> Int? { r.type == REDIS_REPLY_INTEGER ? Int(r.integer) : nil }

/// An integer the size of an argument position or count (Redis's are ints): larger ones, which
/// no Redis sends, are not trusted, so that sums of them and of a request's length cannot overflow.
func smallInteger(_ r: redisReply) -> Int? {
    integer(r).flatMap { (-Int(Int32.max)...Int(Int32.max)).contains($0) ? $0 : nil }
}

/// The texts of an array's string elements.
func strings(_ r: redisReply) -> [String] {
    guard r.type == REDIS_REPLY_ARRAY else { return [] }
    return (0..<Int(r.elements)).compactMap { i in r.element[i].flatMap { text($0.pointee) } }
}

/// `bytes` equals `word`, ASCII letters compared without case.
func asciiCaseEqual(_ bytes: [UInt8], _ word: String) -> Bool {
    func lower(_ c: UInt8) -> UInt8 { c >= 65 && c <= 90 ? c + 32 : c }
    let w = Array(word.utf8)
    return bytes.count == w.count && !zip(bytes, w).contains { lower($0) != lower($1) }
}
