import Testing
@testable import RESP

@Suite struct RESPWriterTests {
    @Test func writesRedisReplies() {
        var out: [UInt8] = []
        RESPWriter.simpleString("OK", into: &out)
        RESPWriter.error("ERR bad\r\nthing", into: &out)
        RESPWriter.integer(0, into: &out)
        RESPWriter.integer(Int.min, into: &out)
        RESPWriter.integer(1234567890, into: &out)
        RESPWriter.bulk(Array("a\r\nb"), into: &out)
        RESPWriter.bulk("", into: &out)
        RESPWriter.nullBulk(into: &out)
        RESPWriter.nullArray(into: &out)
        RESPWriter.arrayHeader(2, into: &out)
        #expect(String(decoding: out, as: UTF8.self) ==
                "+OK\r\n-ERR bad  thing\r\n:0\r\n:-9223372036854775808\r\n:1234567890\r\n$4\r\na\r\nb\r\n$0\r\n\r\n$-1\r\n*-1\r\n*2\r\n")
    }

    @Test func commandsParseBack() {
        var out: [UInt8] = []
        RESPWriter.command(["SET", "k", "v"], into: &out)
        RESPWriter.command([[0, 1, 2], []], into: &out)
        let parsed = parse(out)
        #expect(parsed.requests.map(\.args) == [[Array("SET"), Array("k"), Array("v")], [[0, 1, 2], []]])
        #expect(hiredisReplyEnds(out) == parsed.requests.reduce(into: [Int]()) { $0.append(($0.last ?? 0) + $1.length) })
    }
}

@Suite struct CommandNameTests {
    @Test func lowercasesAsciiOnly() {
        #expect(CommandName("GET") == CommandName("get"))
        #expect(CommandName("GeT").bytes == Array("get"))
        #expect(CommandName([0xC3, 0x89]).bytes == [0xC3, 0x89])      // 'É' in UTF-8 is left alone
        #expect(CommandName("@[`{") == CommandName("@[`{"))           // neighbours of A-Z unchanged
        #expect(CommandName("@[`{").bytes == Array("@[`{"))
        #expect(CommandName("get") != CommandName("gets"))
        #expect(CommandName("get") != CommandName("ge"))
        #expect(CommandName("a\0") != CommandName("a"))               // length is part of the name
    }

    @Test func capacityAndTooLong() {
        let full = String(repeating: "x", count: CommandName.capacity)
        #expect(!CommandName(full).isTooLong)
        #expect(CommandName(full).bytes == Array(full))
        #expect(CommandName(full + "y").isTooLong)
        #expect(CommandName(full + "y") != CommandName(full))
        let table: Set<CommandName> = [CommandName("get"), CommandName("mget"), CommandName("set")]
        #expect(table.contains(CommandName("MGET")))
        #expect(!table.contains(CommandName("getex")))
    }
}
