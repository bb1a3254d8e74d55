import Testing
@testable import RespServer
import RESP

/// The SCAN cursor the proxy answers (`ScanCursor`) and its lower-phase tickets (`ScanTickets`).
@Suite struct ScanCursorTests {
    private func parse(_ text: String) -> ScanCursor? { ScanCursor.parse(Array(text.utf8)) }

    @Test func cursorsAreDecimalUnsigned64BitNumbersAsRedisReadsThem() {
        #expect(parse("abc") == nil)
        #expect(parse("1x") == nil)
        #expect(parse(" 1") == nil)
        #expect(parse("18446744073709551616") == nil)          // 2^64
        #expect(parse("18446744073709551615") == .lower(ticket: (1 << 63) - 1))
        if case .hot(_, let hot)? = parse("0") { #expect(hot == 0) } else { Issue.record("0 starts in hot") }
        if case .hot(_, let hot)? = parse("") { #expect(hot == 0) } else { Issue.record("'' is 0, as strtoul reads it") }
    }

    @Test func hotCursorsCarryTheStartSecondAndRoundTrip() {
        let began = ScanCursor.nowStamp()
        for hot: UInt64 in [1, 7, 1 << 20, (1 << 40) - 1] {
            let value = ScanCursor.hot(began: began, hot: hot).value
            #expect(value < 1 << 63)
            #expect(parse(String(value)) == .hot(began: began, hot: hot), "hot cursor \(hot)")
        }
        #expect(ScanCursor.elapsedSeconds(since: began) <= 1)
        // Across the stamp's wrap the age is still small and positive.
        #expect(ScanCursor.elapsedSeconds(since: (began &- 3) & ScanCursor.stampMask) >= 3)
    }

    @Test func ticketsAreKeptUnchangedBoundedAndExpire() {
        let tickets = ScanTickets(capacity: 3, lifetimeMillis: 3_600_000)
        let first = tickets.issue(ScanTicket(tier: 0, continuation: "a", began: 5))
        #expect(tickets.ticket(first)?.continuation == "a")
        #expect(tickets.ticket(first)?.continuation == "a", "a cursor may be sent again")
        let later = (0..<3).map { tickets.issue(ScanTicket(tier: 1, continuation: "\($0)", began: nil)) }
        #expect(tickets.ticket(first) == nil, "the oldest goes when the table is full")
        #expect(later.map { tickets.ticket($0)?.continuation } == ["0", "1", "2"])
        #expect(tickets.count == 3)
        #expect(later.allSatisfy { ScanCursor.lower(ticket: $0).value >= 1 << 63 })
        let gone = ScanTickets(capacity: 10, lifetimeMillis: 0)
        #expect(gone.ticket(gone.issue(ScanTicket(tier: 0, continuation: nil, began: nil))) == nil)
    }

    @Test func keyspaceCommandsRouteToTheProxy() {
        let args = { (words: [String]) in words.map { Array($0.utf8) } }
        func route(_ words: String...) -> TieredCommand.Route? {
            TieredCommand.route(CommandName(words[0]), args(words), table: CommandTable(), scripts: ScriptFlags(), strictScripts: false)
        }
        guard case .keyspace(.scan)? = route("scan", "0", "MATCH", "a*") else { Issue.record("SCAN"); return }
        guard case .keyspace(.keys)? = route("KEYS", "*") else { Issue.record("KEYS"); return }
        guard case .keyspace(.dbsize)? = route("dbsize") else { Issue.record("DBSIZE"); return }
        guard case .keyspace(.randomkey)? = route("randomkey") else { Issue.record("RANDOMKEY"); return }
        // Wrong arity: hot answers Redis's own error.
        #expect(route("scan") == nil && route("keys") == nil && route("dbsize", "x") == nil)
    }
}
