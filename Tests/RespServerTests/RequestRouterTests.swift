import Testing
@testable import RespServer

/// How a client's request is routed (Proxy/RequestRouter.swift): from its facts and the
/// session's mode alone, no socket.
@Suite struct RequestRouterTests {
    private let plain = RequestFacts(mayShare: true)
    private let stateful = RequestFacts(mayShare: false)
    private let shared = SessionMode()
    private let pinned = SessionMode(pinned: true)

    @Test func emptyRequestsAreDroppedUnlessRepliesAreUncounted() {
        #expect(RequestRouter.route(RequestFacts(isEmpty: true), in: shared) == .dropEmpty)
        // Under CLIENT REPLY SKIP Redis must see it: it ends the skip.
        #expect(RequestRouter.route(RequestFacts(isEmpty: true), in: SessionMode(sequenced: false, pinned: true)) == .passEmpty)
    }

    @Test func quitIsTheProxysOnlyWhileRepliesAreCounted() {
        let quit = RequestFacts(isQuit: true, mayShare: true)
        #expect(RequestRouter.route(quit, in: shared) == .quit)
        #expect(RequestRouter.route(quit, in: SessionMode(sequenced: false, pinned: true, allAnswered: false))
                == .forward(reauthenticate: false, replication: false))
    }

    @Test func statelessRequestsShareUntilThirtyTwoAreInFlight() {
        #expect(RequestRouter.route(plain, in: shared) == .forwardShared)
        #expect(RequestRouter.route(plain, in: SessionMode(sharedInFlight: Worker.maxSharedInFlight - 1)) == .forwardShared)
        // A client that does not read its replies gets a connection of its own, once they are in.
        #expect(RequestRouter.route(plain, in: SessionMode(sharedInFlight: Worker.maxSharedInFlight)) == .waitToPin)
        #expect(RequestRouter.route(plain, in: pinned) == .forward(reauthenticate: false, replication: false))
    }

    @Test func connectionStatePinsOnlyOnceSharedRepliesAreIn() {
        #expect(RequestRouter.route(stateful, in: shared) == .pin)
        #expect(RequestRouter.route(stateful, in: SessionMode(sharedInFlight: 1, allAnswered: false)) == .waitToPin)
        #expect(RequestRouter.route(stateful, in: pinned) == .forward(reauthenticate: false, replication: false))
    }

    @Test func aTieredCommandThatMayShareStaysShared() {
        let tiered = RequestFacts(mayShare: true, tiered: .run(mayOverlap: false), takesKeyLocks: true)
        #expect(RequestRouter.route(tiered, in: shared) == .runTiered)
        #expect(RequestRouter.route(tiered, in: SessionMode(sharedInFlight: 3, allAnswered: false)) == .waitForBarrier)
        // One that may not share pins first, like any other.
        let stateful = RequestFacts(mayShare: false, tiered: .run(mayOverlap: false), takesKeyLocks: true)
        #expect(RequestRouter.route(stateful, in: shared) == .pin)
    }

    @Test func onlyOverlappingTieredCommandsStartBeforeEarlierReplies() {
        let busy = SessionMode(pinned: true, allAnswered: false)
        #expect(RequestRouter.route(RequestFacts(tiered: .run(mayOverlap: true)), in: busy) == .runTiered)
        #expect(RequestRouter.route(RequestFacts(tiered: .run(mayOverlap: false)), in: busy) == .waitForBarrier)
        #expect(RequestRouter.route(RequestFacts(tiered: .run(mayOverlap: false)), in: pinned) == .runTiered)
    }

    @Test func foldsInDoubtHoldBackWhatTakesNoKeyLock() {
        let doubt = SessionMode(pinned: true, allAnswered: false, foldsInDoubt: true)
        #expect(RequestRouter.route(plain, in: doubt) == .waitBehindFolds)
        #expect(RequestRouter.route(RequestFacts(tiered: .run(mayOverlap: true), takesKeyLocks: true), in: doubt) == .runTiered)
        // A blind write pipelined takes its locks too, though the tiering code runs nothing.
        #expect(RequestRouter.route(RequestFacts(takesKeyLocks: true), in: doubt) == .forward(reauthenticate: false, replication: false))
    }

    @Test func theAuthGateDecidesBeforeAnythingElse() {
        #expect(RequestRouter.route(RequestFacts(gate: .answer(endsTransaction: false)), in: shared) == .answer(endsTransaction: false))
        #expect(RequestRouter.route(RequestFacts(gate: .answer(endsTransaction: true)), in: pinned) == .answer(endsTransaction: true))
        #expect(RequestRouter.route(RequestFacts(gate: .rewrite), in: pinned) == .rewrite)
        #expect(RequestRouter.route(RequestFacts(gate: .reset), in: pinned) == .forward(reauthenticate: true, replication: false))
    }

    @Test func tiersIsAnsweredByTheProxyInItsPlace() {
        #expect(RequestRouter.route(RequestFacts(isTiers: true, mayShare: true), in: shared) == .answerTiers)
        #expect(RequestRouter.route(RequestFacts(isTiers: true), in: SessionMode(sequenced: false, pinned: true))
                == .forward(reauthenticate: false, replication: false))
    }

    @Test func replicationWaitsForEarlierRepliesThenGoesAlone() {
        let sync = RequestFacts(startsReplication: true)
        #expect(RequestRouter.route(sync, in: SessionMode(pinned: true, allAnswered: false)) == .waitBeforeReplication)
        #expect(RequestRouter.route(sync, in: pinned) == .forward(reauthenticate: false, replication: true))
        #expect(!RequestAction.forward(reauthenticate: false, replication: true).joinsBatch)
    }

    @Test func aCapturedExecRunsOnlyWhileRepliesAreCounted() {
        let exec = RequestFacts(capturesExec: true)
        #expect(RequestRouter.route(exec, in: pinned) == .runExec)
        #expect(RequestRouter.route(exec, in: SessionMode(sequenced: false, pinned: true))
                == .forward(reauthenticate: false, replication: false))
    }

    @Test func onlyWhatIsSentHasItsEffectsNoted() {
        #expect(RequestAction.forwardShared.headsUpstream && RequestAction.waitToPin.headsUpstream)
        for action: RequestAction in [.dropEmpty, .quit, .answerTiers, .waitBehindFolds, .answer(endsTransaction: false)] {
            #expect(!action.headsUpstream, "\(action)")
        }
    }
}
