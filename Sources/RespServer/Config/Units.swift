/// Redis-style value parsing: memory sizes ("1gb", "512mb", "100k") and yes/no.
enum Units {
    /// Parses a memory size the way redis.conf does: 1k = 1000, 1kb = 1024, case-insensitive.
    static func memory(_ text: String) throws -> Int {
        let lower = text.lowercased()
        let table: [(String, Int)] = [("kb", 1024), ("mb", 1024 * 1024), ("gb", 1024 * 1024 * 1024),
                                      ("k", 1000), ("m", 1000 * 1000), ("g", 1000 * 1000 * 1000), ("b", 1)]
        for (suffix, mul) in table where lower.hasSuffix(suffix) {
            guard let n = Int(lower.dropLast(suffix.count)), n >= 0 else { break }
            return n * mul
        }
        guard let n = Int(lower), n >= 0 else { throw ConfigError("argument must be a memory value: '\(text)'") }
        return n
    }

    static func bool(_ text: String) throws -> Bool {
        switch text.lowercased() {
        case "yes": return true
        case "no": return false
        default: throw ConfigError("argument must be 'yes' or 'no': '\(text)'")
        }
    }

    static func int(_ text: String, _ range: ClosedRange<Int>) throws -> Int {
        guard let n = Int(text), range.contains(n) else {
            throw ConfigError("argument must be an integer in \(range.lowerBound)..\(range.upperBound): '\(text)'")
        }
        return n
    }
}

/// A configuration mistake, worded for the person editing the file.
struct ConfigError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}
