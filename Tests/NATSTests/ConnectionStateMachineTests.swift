import Testing

@testable import NATS

/// The transitions of a connection's state machine, without a server: waiters and listeners are
/// plain values, so every test sees exactly which ones an action hands back (and that none is
/// handed back twice). `#expect` cannot take a noncopyable value apart, so values are read out
/// of the machine first.
@Suite("Connection state machine")
struct ConnectionStateMachineTests {
    typealias Machine = ConnectionStateMachine<Int, String>

    private func connected() -> Machine {
        var machine = Machine()
        guard case .proceed = machine.connectRequested() else {
            Issue.record("a new connection refused to connect")
            return machine
        }
        let succeeded = machine.connectSucceeded()
        #expect(succeeded == .connected)
        return machine
    }

    @Test func idleConnectingConnected() {
        var machine = Machine()
        check(machine, .idle, .notConnected)
        _ = machine.addListener("events")
        guard case .proceed = machine.connectRequested() else {
            Issue.record("a new connection refused to connect")
            return
        }
        check(machine, .connecting, .notConnected)
        let succeeded = machine.connectSucceeded()
        #expect(succeeded == .connected)
        check(machine, .connected, .open)
        let announced = machine.received(.connected(server: "nats://127.0.0.1:4222"))
        #expect(announced.listeners == ["events"])
        #expect(announced.finish == nil && !announced.ignored)
    }

    @Test func connectFailureGoesBackToIdleAndMayBeRetried() {
        var machine = Machine()
        _ = machine.connectRequested()
        guard case .idle = machine.connectFailed(NATSError(.noServers, "no server")) else {
            Issue.record("a failed connect did not go back to idle")
            return
        }
        check(machine, .idle, .notConnected)
        guard case .proceed = machine.connectRequested() else {
            Issue.record("a connection whose connect failed cannot connect again")
            return
        }
        let succeeded = machine.connectSucceeded()
        #expect(succeeded == .connected)
    }

    @Test func connectFailureAfterACloseEndsClosed() {
        var machine = Machine()
        _ = machine.connectRequested()
        let added = machine.addCloseWaiter(7)
        #expect(added)
        guard case .wait = machine.closeRequested() else {
            Issue.record("close while connecting did not wait for the connect")
            return
        }
        check(machine, .connecting, .closed)
        guard case .closed(let finish, let error) = machine.connectFailed(NATSError(.noServers, "no server")) else {
            Issue.record("a failed connect after a close did not end closed")
            return
        }
        #expect(finish.waiters == [7])
        #expect(error.code == .connectionClosed)
        #expect(error.message.contains("closed while connecting") && error.message.contains("no server"))
        check(machine, .closed, .closed)
    }

    @Test func closeWhileConnectingAbandonsTheConnectionItMade() {
        var machine = Machine()
        _ = machine.addListener("events")
        _ = machine.connectRequested()
        _ = machine.addCloseWaiter(1)
        guard case .wait = machine.closeRequested() else {
            Issue.record("close while connecting did not wait for the connect")
            return
        }
        // Operations are refused from the close on, though the connect has not ended.
        check(machine, .connecting, .closed)
        // Events of the connection being abandoned reach nobody.
        let lost = machine.received(.disconnected)
        #expect(lost.listeners.isEmpty && lost.ignored)
        let succeeded = machine.connectSucceeded()
        #expect(succeeded == .abandon)
        check(machine, .connecting, .closed, "closed only once the connection it made is destroyed")
        let (finish, error) = machine.connectAbandoned()
        #expect(finish.waiters == [1])
        #expect(finish.listeners == ["events"])
        #expect(error.code == .connectionClosed)
        #expect(error.message.contains("closed while connecting"))
        check(machine, .closed, .closed)
    }

    @Test func drainWhileConnectingEndsClosedToo() {
        var machine = Machine()
        _ = machine.connectRequested()
        guard case .wait = machine.drainRequested() else {
            Issue.record("drain while connecting did not wait for the connect")
            return
        }
        check(machine, .connecting, .closed)
        // A close after the drain keeps the connect stopping.
        guard case .wait = machine.closeRequested() else {
            Issue.record("close after drain while connecting did not wait")
            return
        }
        let succeeded = machine.connectSucceeded()
        #expect(succeeded == .abandon)
        let (_, error) = machine.connectAbandoned()
        #expect(error.code == .connectionClosed)
        check(machine, .closed, .closed)
    }

    @Test func drainWhileConnectingIsReportedAsADrain() {
        var machine = Machine()
        _ = machine.connectRequested()
        _ = machine.drainRequested()
        let succeeded = machine.connectSucceeded()
        #expect(succeeded == .abandon)
        let (_, error) = machine.connectAbandoned()
        #expect(error.message.contains("drained while connecting"))
    }

    @Test func cnatsClosingWhileConnectingAbandonsToo() {
        var machine = Machine()
        _ = machine.connectRequested()
        let closed = machine.received(.closed)
        #expect(closed.ignored && closed.finish == nil)
        check(machine, .connecting, .closed)
        let succeeded = machine.connectSucceeded()
        #expect(succeeded == .abandon)
        let (_, error) = machine.connectAbandoned()
        #expect(error.code == .connectionClosed)
    }

    @Test func drainThenClosedCallback() {
        var machine = connected()
        _ = machine.addListener("events")
        _ = machine.addCloseWaiter(3)
        guard case .startDrain = machine.drainRequested() else {
            Issue.record("drain of a connected connection did not start draining")
            return
        }
        check(machine, .draining, .open, "publishes still go out while draining")
        let lost = machine.received(.disconnected)
        #expect(lost.expected, "the disconnection that ends a drain is expected")
        _ = machine.received(.error(NATSError(.timeout, "drain timeout")))
        let timedOut = machine.drainTimedOut
        #expect(timedOut)
        guard case .wait = machine.drainRequested() else {
            Issue.record("a second drain did not wait")
            return
        }
        let closed = machine.received(.closed)
        #expect(closed.finish?.waiters == [3])
        #expect(closed.finish?.listeners == ["events"])
        check(machine, .closed, .closed)
    }

    @Test func closeTwice() {
        var machine = connected()
        _ = machine.addCloseWaiter(1)
        guard case .closeNative = machine.closeRequested() else {
            Issue.record("close of a connected connection did not close the native connection")
            return
        }
        check(machine, .closing, .closed)
        _ = machine.addCloseWaiter(2)
        guard case .wait = machine.closeRequested() else {
            Issue.record("a second close closed the native connection again")
            return
        }
        let closed = machine.received(.closed)
        #expect(closed.finish?.waiters == [1, 2])
        guard case .none = machine.closeRequested() else {
            Issue.record("a close after closed did something")
            return
        }
        guard case .none = machine.drainRequested() else {
            Issue.record("a drain after closed did something")
            return
        }
    }

    @Test func closeWhileDrainingClosesTheNativeConnection() {
        var machine = connected()
        _ = machine.drainRequested()
        guard case .closeNative = machine.closeRequested() else {
            Issue.record("close while draining did not close")
            return
        }
        check(machine, .closing, .closed)
    }

    @Test func eventsAfterClosedAreIgnored() {
        var machine = connected()
        _ = machine.addListener("events")
        _ = machine.closeRequested()
        let closed = machine.received(.closed)
        #expect(closed.finish != nil)
        for event: NATSConnectionEvent in [
            .disconnected, .reconnected(server: "x"), .lameDuckMode, .closed, .connected(server: "x"),
            .error(NATSError(.timeout, "late")),
        ] {
            let action = machine.received(event)
            #expect(action.ignored, "\(event)")
            #expect(action.listeners.isEmpty && action.finish == nil, "\(event)")
        }
        let listener = machine.addListener("late")
        #expect(listener == nil)
        let added = machine.addCloseWaiter(9)
        #expect(!added)
        let recovers = machine.recoveryRequested()
        #expect(!recovers)
        guard case .reject(let error) = machine.connectRequested() else {
            Issue.record("a closed connection connected again")
            return
        }
        #expect(error.code == .connectionClosed)
    }

    @Test func waitersAreResumedExactlyOnce() {
        var machine = connected()
        _ = machine.addCloseWaiter(1)
        _ = machine.addCloseWaiter(2)
        _ = machine.closeRequested()
        var resumed: [Int] = []
        // The native close's callback, then a second one (a link giving up), then a release.
        resumed += machine.received(.closed).finish?.waiters ?? []
        resumed += machine.received(.closed).finish?.waiters ?? []
        resumed += machine.released()?.waiters ?? []
        #expect(resumed == [1, 2])
    }

    @Test func closingANewConnectionFinishesAtOnce() {
        var machine = Machine()
        _ = machine.addListener("events")
        guard case .finish(let finish) = machine.closeRequested() else {
            Issue.record("closing a connection that never connected did not finish at once")
            return
        }
        #expect(finish.listeners == ["events"])
        check(machine, .closed, .closed)
    }

    @Test func releasingANewConnectionFinishesIt() {
        var machine = Machine()
        _ = machine.addListener("events")
        let released = machine.released()
        #expect(released?.listeners == ["events"])
        check(machine, .closed, .closed)
    }

    @Test func connectingTwiceIsRefused() {
        var machine = connected()
        guard case .reject(let error) = machine.connectRequested() else {
            Issue.record("a connected connection connected again")
            return
        }
        #expect(error.code == .invalidArgument)
    }

    @Test func disconnectionsAreExpectedOnlyWhenTheApplicationStops() {
        var machine = connected()
        _ = machine.addListener("events")
        let lost = machine.received(.disconnected)
        #expect(!lost.expected)
        #expect(lost.listeners == ["events"])
        _ = machine.closeRequested()
        let closing = machine.received(.disconnected)
        #expect(closing.expected)
    }

    @Test func onlyAConnectionInUseIsRecovered() {
        var machine = connected()
        let recovers = machine.recoveryRequested()
        #expect(recovers)
        let recovering = machine.recovering
        #expect(recovering)
        _ = machine.received(.reconnected(server: "nats://127.0.0.1:4222"))
        let recovered = !machine.recovering
        #expect(recovered)
        _ = machine.drainRequested()
        let drainingRecovers = machine.recoveryRequested()
        #expect(!drainingRecovers, "a draining connection the server closed stays closed")
        var closing = connected()
        _ = closing.closeRequested()
        let closingRecovers = closing.recoveryRequested()
        #expect(!closingRecovers)
        var connecting = Machine()
        _ = connecting.connectRequested()
        let connectingRecovers = connecting.recoveryRequested()
        #expect(!connectingRecovers)
    }

    /// Checks the machine's phase and availability.
    private func check(
        _ machine: borrowing Machine,
        _ phase: ConnectionPhase,
        _ availability: ConnectionAvailability,
        _ comment: Comment? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let actualPhase = machine.phase
        let actualAvailability = machine.availability
        #expect(actualPhase == phase, comment, sourceLocation: sourceLocation)
        #expect(actualAvailability == availability, comment, sourceLocation: sourceLocation)
    }
}
