/// A secret string (account key, SAS token, client secret, bearer token) that never prints itself.
/// `description` and string interpolation show only its length, so logs and errors stay clean.
public struct Secret: CustomStringConvertible, CustomDebugStringConvertible, Equatable, Sendable {
    /// The secret itself; read it only where it is used on the wire or for signing.
    public let reveal: String
    public init(_ value: String) { reveal = value }
    public var isEmpty: Bool { reveal.isEmpty }
    public var description: String { "<redacted \(reveal.utf8.count) chars>" }
    public var debugDescription: String { description }
}
