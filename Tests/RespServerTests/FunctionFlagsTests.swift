import Testing
@testable import RespServer

/// `FUNCTION LIST` replies as Redis 7.0 sends them (bytes read off a redis-server, RESP2 and
/// RESP3), and the read-only functions the proxy takes from them.
@Suite struct FunctionFlagsTests {
    private static let resp2 = "*1\r\n*6\r\n$12\r\nlibrary_name\r\n$2\r\nff\r\n$6\r\nengine\r\n$3\r\nLUA\r\n$9\r\nfunctions\r\n*2\r\n"
        + "*6\r\n$4\r\nname\r\n$1\r\nr\r\n$11\r\ndescription\r\n$-1\r\n$5\r\nflags\r\n*1\r\n+no-writes\r\n"
        + "*6\r\n$4\r\nname\r\n$1\r\nw\r\n$11\r\ndescription\r\n$-1\r\n$5\r\nflags\r\n*0\r\n"
    private static let resp3 = "*1\r\n%3\r\n$12\r\nlibrary_name\r\n$2\r\nff\r\n$6\r\nengine\r\n$3\r\nLUA\r\n$9\r\nfunctions\r\n*2\r\n"
        + "%3\r\n$4\r\nname\r\n$1\r\nr\r\n$11\r\ndescription\r\n_\r\n$5\r\nflags\r\n~1\r\n+no-writes\r\n"
        + "%3\r\n$4\r\nname\r\n$1\r\nw\r\n$11\r\ndescription\r\n_\r\n$5\r\nflags\r\n~0\r\n"

    @Test(arguments: [resp2, resp3])
    func onlyFunctionsFlaggedNoWritesAreReadOnly(_ reply: String) {
        #expect(FunctionFlags.readOnlyNames(Array(reply.utf8)) == ["r"])
    }

    @Test func noLibrariesMeansNoReadOnlyFunctionsAndAnErrorMeansUnknown() {
        #expect(FunctionFlags.readOnlyNames(Array("*0\r\n".utf8)) == [])
        #expect(FunctionFlags.readOnlyNames(Array("-NOPERM no\r\n".utf8)) == nil)
    }

    @Test func aScriptFlagsTableJudgesFcallByTheNamesItWasGiven() {
        let flags = ScriptFlags()
        let call: (String) -> [[UInt8]] = { [Array("FCALL".utf8), Array($0.utf8), Array("0".utf8)] }
        #expect(flags.mayWrite("fcall", call("r")))
        flags.setReadOnlyFunctions(["r"])
        #expect(!flags.mayWrite("fcall", call("r")))
        #expect(flags.mayWrite("fcall", call("w")))
    }
}
