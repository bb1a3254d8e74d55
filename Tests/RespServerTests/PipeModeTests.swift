import Testing
@testable import RespServer
import RESP

/// When a pinned connection becomes a byte pipe (Proxy/PipeMode.swift), decided from bytes and
/// the session's pending intercepts alone.
@Suite struct PipeModeTests {
    @Test func onlySyncAndPsyncStartReplication() {
        #expect(PipeMode.startsReplication(CommandName("sync")))
        #expect(PipeMode.startsReplication(CommandName("psync")))
        for name in ["replconf", "replicaof", "slaveof", "wait", "monitor"] {
            #expect(!PipeMode.startsReplication(CommandName(name)), "\(name)")
        }
    }

    /// What Redis answers to SYNC/PSYNC: a stream (keepalive newline, +FULLRESYNC/+CONTINUE, the
    /// RDB's bulk header), or a refusal, which is one error reply and leaves the connection counted.
    @Test func theAnswersFirstByteTellsStreamFromRefusal() {
        for first in ["\n", "+", "$"] {
            #expect(PipeMode.startsStream(firstByte: Array(first.utf8)[0]), "\(first.debugDescription)")
        }
        for refusal in ["-NOPERM this user has no permissions to run the 'sync' command\r\n",
                        "-NOAUTH Authentication required.\r\n",
                        "-ERR Command not allowed inside a transaction\r\n"] {
            #expect(!PipeMode.startsStream(firstByte: Array(refusal.utf8)[0]), "\(refusal)")
        }
    }

    @Test func aPipeTakesOverOnlyWhereNoHandlerWaits() {
        let handler: ReplyHandler = { _, _ in }
        let getOnly = [Intercept(seq: 3, handler: nil), Intercept(seq: 5, handler: nil)]
        #expect(PipeMode.canTakeOver(getOnly[...], failedSeq: 4, capturing: false), "GET read-throughs are given up")
        let composed = [Intercept(seq: 3, handler: nil), Intercept(seq: 6, handler: handler)]
        #expect(!PipeMode.canTakeOver(composed[...], failedSeq: 4, capturing: false), "a later composed reply is owed")
        #expect(PipeMode.canTakeOver(composed[...], failedSeq: 7, capturing: false), "the composed reply came before")
        #expect(!PipeMode.canTakeOver([][...], failedSeq: 0, capturing: true), "a reply half captured")
    }

    @Test func aReplicaLinkHasNoOutputLimitOfTheProxys() {
        let normal = OutputLimit(hard: 10, soft: 5, softSeconds: 1)
        var pipe = PipeMode()
        #expect(pipe.outputLimit(normal) == normal)
        pipe.replica = true
        #expect(pipe.outputLimit(normal) == OutputLimit())
    }
}
