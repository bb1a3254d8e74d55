import Reactor

/// Which functions cannot write, as hot itself says: `FUNCTION LIST` names each function's flags,
/// and a function registered with `flags={'no-writes'}` is read-only, so a keyless `FCALL` of it
/// is allowed under `tiers-scripts strict` and its keys are only brought up. Reading Redis's
/// answer rather than the Lua source: a library's body registers functions in code, which only
/// Redis can evaluate faithfully.
///
/// Read when the first loop starts (functions persist in Redis) and again after every
/// `FUNCTION LOAD | DELETE | FLUSH | RESTORE` through this proxy; functions loaded elsewhere
/// are seen at the next of those, and until then count as writers.
enum FunctionFlags {
    static func isRefreshing(_ args: [[UInt8]]) -> Bool {
        guard args.count >= 2 else { return false }
        return ["load", "delete", "flush", "restore"].contains(String(decoding: args[1], as: UTF8.self).lowercased())
    }

    /// Asks hot for the function list and hands the read-only names to `scripts`.
    static func refresh(hot: HotClient, scripts: ScriptFlags) {
        hot.send([[Array("FUNCTION".utf8), Array("LIST".utf8)]]) { replies in
            guard let reply = replies.first, let names = readOnlyNames(reply) else { return }
            scripts.setReadOnlyFunctions(names)
        }
    }

    /// The names of functions flagged `no-writes` in a `FUNCTION LIST` reply (RESP2 or RESP3);
    /// nil if the reply is not a list of libraries.
    static func readOnlyNames(_ reply: [UInt8]) -> Set<String>? {
        guard let libraries = ReplyParts.elements(reply) else { return nil }
        var out = Set<String>()
        for library in libraries {
            guard let functions = field(Array(library), "functions").flatMap({ ReplyParts.elements(Array($0)) }) else { continue }
            for function in functions {
                let f = Array(function)
                guard let name = field(f, "name").flatMap(text), let flags = field(f, "flags") else { continue }
                if (ReplyParts.elements(Array(flags)) ?? []).compactMap(text).contains("no-writes") { out.insert(name) }
            }
        }
        return out
    }

    /// The value after `key` in a flat key/value array (RESP2), or in a RESP3 map.
    private static func field(_ reply: [UInt8], _ key: String) -> ArraySlice<UInt8>? {
        guard let items = ReplyParts.elements(reply) else { return nil }
        var i = 0
        while i + 1 < items.count {
            if text(items[i]) == key { return items[i + 1] }
            i += 2
        }
        return nil
    }

    /// A bulk or simple string's text.
    private static func text(_ r: ArraySlice<UInt8>) -> String? {
        if r.first == UInt8(ascii: "+"), let cr = r.firstIndex(of: 0x0D) {
            return String(decoding: r[(r.startIndex + 1)..<cr], as: UTF8.self)
        }
        if case .some(.some(let bytes)) = ReplyParts.bulk(r) { return String(decoding: bytes, as: UTF8.self) }
        return nil
    }
}
