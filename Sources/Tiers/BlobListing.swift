/// The parts of a List Blobs response (`?restype=container&comp=list&include=metadata`) a purge
/// needs: each blob's name and metadata, and the marker of the next page.
///
///     <EnumerationResults …><Blobs>
///       <Blob><Name>k</Name><Properties>…</Properties><Metadata><tp_db>1</tp_db></Metadata></Blob>
///     </Blobs><NextMarker>…</NextMarker></EnumerationResults>
///
/// A pure function over the bytes: a small XML scanner that follows the element path, decodes the
/// predefined and numeric entities, and percent-decodes names the service marks `Encoded="true"`
/// (names holding characters XML cannot carry). Not a general XML parser: no DTDs, no namespaces.
struct BlobListing: Equatable {
    struct Blob: Equatable {
        var name: String
        /// Metadata names lower-cased (the service keeps them as written; they compare case-insensitively).
        var metadata: [String: String]
    }

    var blobs: [Blob]
    /// The marker for the next page; nil when this is the last one.
    var nextMarker: String?

    /// Parses a response body; nil if it is not a blob listing.
    static func parse(_ xml: [UInt8]) -> BlobListing? {
        var scanner = XMLScanner(xml)
        var path = [String]()
        var text = [UInt8]()
        var encodedName = false
        var listing = BlobListing(blobs: [], nextMarker: nil)
        var sawRoot = false
        while let token = scanner.next() {
            switch token {
            case .malformed:
                return nil
            case .start(let name, let attributes, let selfClosing):
                if path.isEmpty {
                    guard name == "EnumerationResults" else { return nil }
                    sawRoot = true
                }
                if path == ["EnumerationResults", "Blobs"], name == "Blob" {
                    listing.blobs.append(Blob(name: "", metadata: [:]))
                }
                if selfClosing { continue }
                path.append(name)
                text = []
                if path.count == 4, path.last == "Name" { encodedName = attributes.contains { $0 == ("Encoded", "true") } }
            case .text(let bytes):
                text += bytes
            case .end(let name):
                guard path.last == name else { return nil }
                let value = String(decoding: text, as: UTF8.self)
                switch path.count {
                case 2 where name == "NextMarker":
                    listing.nextMarker = value.isEmpty ? nil : value
                case 4 where path[2] == "Blob" && name == "Name":
                    listing.blobs[listing.blobs.count - 1].name = encodedName ? percentDecoded(value) : value
                case 5 where path[2] == "Blob" && path[3] == "Metadata":
                    listing.blobs[listing.blobs.count - 1].metadata[name.lowercased()] = value
                default:
                    break
                }
                path.removeLast()
                text = []
            }
        }
        return sawRoot && path.isEmpty ? listing : nil
    }
}

/// Tokens of an XML document, with entities decoded; comments, processing instructions and
/// declarations skipped.
private struct XMLScanner {
    enum Token {
        case start(String, attributes: [(String, String)], selfClosing: Bool)
        case end(String)
        case text([UInt8])
        case malformed
    }

    private let b: [UInt8]
    private var i = 0

    init(_ bytes: [UInt8]) { b = bytes }

    mutating func next() -> Token? {
        while i < b.count {
            if b[i] != UInt8(ascii: "<") {
                let start = i
                while i < b.count, b[i] != UInt8(ascii: "<") { i += 1 }
                guard let decoded = Self.decodeEntities(b[start..<i]) else { return .malformed }
                return .text(decoded)
            }
            if skip("<?", until: "?>") || skip("<!--", until: "-->") { continue }
            if starts("<![CDATA[") {
                let start = i + 9
                guard let end = find("]]>", from: start) else { return .malformed }
                i = end + 3
                return .text(Array(b[start..<end]))
            }
            if skip("<!", until: ">") { continue }
            guard let close = find(">", from: i) else { return .malformed }
            let inner = b[(i + 1)..<close]
            i = close + 1
            if inner.first == UInt8(ascii: "/") {
                return .end(String(decoding: inner.dropFirst().filter { !Self.isSpace($0) }, as: UTF8.self))
            }
            let selfClosing = inner.last == UInt8(ascii: "/")
            return Self.startTag(selfClosing ? inner.dropLast() : inner, selfClosing: selfClosing)
        }
        return nil
    }

    private static func startTag(_ inner: ArraySlice<UInt8>, selfClosing: Bool) -> Token {
        var j = inner.startIndex
        while j < inner.endIndex, !isSpace(inner[j]) { j += 1 }
        let name = String(decoding: inner[inner.startIndex..<j], as: UTF8.self)
        guard !name.isEmpty else { return .malformed }
        var attributes = [(String, String)]()
        while true {
            while j < inner.endIndex, isSpace(inner[j]) { j += 1 }
            guard j < inner.endIndex else { break }
            guard let eq = inner[j...].firstIndex(of: UInt8(ascii: "=")), eq + 1 < inner.endIndex else { return .malformed }
            let attr = String(decoding: inner[j..<eq].filter { !isSpace($0) }, as: UTF8.self)
            let quote = inner[eq + 1]
            guard quote == UInt8(ascii: "\"") || quote == UInt8(ascii: "'"),
                  let end = inner[(eq + 2)...].firstIndex(of: quote),
                  let value = decodeEntities(inner[(eq + 2)..<end]) else { return .malformed }
            attributes.append((attr, String(decoding: value, as: UTF8.self)))
            j = end + 1
        }
        return .start(name, attributes: attributes, selfClosing: selfClosing)
    }

    /// `&amp;` `&lt;` `&gt;` `&quot;` `&apos;` `&#N;` `&#xH;`; nil for anything else after `&`.
    private static func decodeEntities(_ s: ArraySlice<UInt8>) -> [UInt8]? {
        guard s.contains(UInt8(ascii: "&")) else { return Array(s) }
        var out = [UInt8]()
        var j = s.startIndex
        while j < s.endIndex {
            guard s[j] == UInt8(ascii: "&") else { out.append(s[j]); j += 1; continue }
            guard let semi = s[j...].prefix(12).firstIndex(of: UInt8(ascii: ";")) else { return nil }
            let entity = String(decoding: s[(j + 1)..<semi], as: UTF8.self)
            switch entity {
            case "amp": out.append(UInt8(ascii: "&"))
            case "lt": out.append(UInt8(ascii: "<"))
            case "gt": out.append(UInt8(ascii: ">"))
            case "quot": out.append(UInt8(ascii: "\""))
            case "apos": out.append(UInt8(ascii: "'"))
            default:
                let hex = entity.hasPrefix("#x") || entity.hasPrefix("#X")
                guard entity.hasPrefix("#"), let code = UInt32(entity.dropFirst(hex ? 2 : 1), radix: hex ? 16 : 10),
                      let scalar = Unicode.Scalar(code) else { return nil }
                out += Array(String(Character(scalar)).utf8)
            }
            j = semi + 1
        }
        return out
    }

    private static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D }

    private func starts(_ prefix: String) -> Bool { b[i...].starts(with: prefix.utf8) }

    /// Skips a construct that opens with `open` and closes with `close`; false if not at one.
    private mutating func skip(_ open: String, until close: String) -> Bool {
        guard starts(open), let end = find(close, from: i + open.utf8.count) else { return false }
        i = end + close.utf8.count
        return true
    }

    private func find(_ needle: String, from: Int) -> Int? {
        let n = Array(needle.utf8)
        guard from <= b.count - n.count else { return nil }
        var k = from
        while k <= b.count - n.count {
            if b[k] == n[0], b[k..<(k + n.count)].elementsEqual(n) { return k }
            k += 1
        }
        return nil
    }
}
