import Testing
@testable import RespServer

/// How a session ends when its upstream connection is lost or its client sends malformed bytes
/// (Proxy/FailurePolicy.swift): decided from what it holds alone.
@Suite struct FailurePolicyTests {
    typealias Loss = FailurePolicy.UpstreamLoss

    @Test func aReplyCutInHalfOrStillComposedMeansAClose() {
        #expect(FailurePolicy.afterUpstreamLoss(Loss(midReply: true, unanswered: 3)) == .closeNow)
        #expect(FailurePolicy.afterUpstreamLoss(Loss(holding: true, unanswered: 1)) == .closeNow)
        #expect(FailurePolicy.afterUpstreamLoss(Loss(capturing: true)) == .closeNow)
        // Cut in half: the handlers are not told (their reply is lost with the stream).
        #expect(!FailurePolicy.failsInterceptsFirst(Loss(midReply: true, interceptsPending: true)))
        #expect(FailurePolicy.failsInterceptsFirst(Loss(interceptsPending: true)))
    }

    @Test func afterQuitTheProxysOwnRepliesAreFinishedFirst() {
        #expect(FailurePolicy.afterUpstreamLoss(Loss(holding: true, quitting: true)) == .finishComposedThenClose)
        #expect(FailurePolicy.afterUpstreamLoss(Loss(midReply: true, holding: true, quitting: true)) == .closeNow)
        #expect(FailurePolicy.afterUpstreamLoss(Loss(quitting: true)) == .closeNow)
    }

    @Test func onlyAConnectionRedisNeverAcceptedAnswersWithErrors() {
        #expect(FailurePolicy.afterUpstreamLoss(Loss(unanswered: 2)) == .answerThenClose(errors: 2))
        // Redis accepted it and closed it (CLIENT KILL, its timeout): a direct client sees a close.
        #expect(FailurePolicy.afterUpstreamLoss(Loss(unanswered: 2, wasConnected: true)) == .answerThenClose(errors: 0))
        #expect(FailurePolicy.afterUpstreamLoss(Loss(protocolErrorOwed: true)) == .answerThenClose(errors: 0))
        #expect(FailurePolicy.afterUpstreamLoss(Loss(outputPending: true, wasConnected: true)) == .answerThenClose(errors: 0))
    }

    @Test func withNothingOwedAFailedConnectLingersForARequestToAnswer() {
        #expect(FailurePolicy.afterUpstreamLoss(Loss()) == .linger)
        #expect(FailurePolicy.afterUpstreamLoss(Loss(wasConnected: true)) == .closeNow)
        #expect(FailurePolicy.afterUpstreamLoss(Loss(shuttingDown: true)) == .closeNow)
    }

    @Test func malformedBytesAreAnsweredInTheirPlace() {
        #expect(FailurePolicy.afterProtocolError(sequenced: true, ownConnectionUp: true, failed: false, allAnswered: false) == .answerAfterOwed)
        #expect(FailurePolicy.afterProtocolError(sequenced: true, ownConnectionUp: false, failed: false, allAnswered: true) == .answerAndClose)
        #expect(FailurePolicy.afterProtocolError(sequenced: false, ownConnectionUp: true, failed: false, allAnswered: false) == .redisJudges)
        #expect(FailurePolicy.afterProtocolError(sequenced: false, ownConnectionUp: false, failed: false, allAnswered: false) == .answerAndClose)
        #expect(FailurePolicy.afterProtocolError(sequenced: true, ownConnectionUp: true, failed: true, allAnswered: false) == .answerAndClose)
    }
}
