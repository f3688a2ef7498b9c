import Foundation
import NATS
import NATSTestSupport
import Testing

/// The asynchronous publisher's window: waiting for room, cancellation, outcomes.
@Suite("JetStream publisher window", .tags(.server))
struct JetStreamPublisherWindowTests {
    /// A publish waiting for room in a full window stops waiting when its task is cancelled,
    /// instead of waiting for the publish in front of it to time out.
    @Test func aPublishWaitingForRoomIsCancellable() async throws {
        let held = try await HeldWindow.make()
        defer { held.server.kill() }
        let (connection, publisher, first, second) = (held.connection, held.publisher, held.first, held.second)
        let clock = ContinuousClock()
        let cancelledAt = clock.now
        second.cancel()
        let result = await second.result
        // Well under the 30 s ack timeout the first publish holds the window for (loose: the whole
        // suite shares two cores).
        #expect(cancelledAt.duration(to: clock.now) < .seconds(10))
        #expect(throws: NATSError.self) { try result.get() }
        if case .failure(let error as NATSError) = result { #expect(error.code == .cancelled) }
        #expect(publisher.pendingCount == 1, "only the first publish is in flight")
        #expect(first.outcome == nil)
        await connection.close()
        // The connection closed: the first publish ends with an outcome, and the window is empty.
        #expect(await first.result().isFailure)
        #expect(publisher.pendingCount == 0)
    }

    /// Several tasks may wait for one publish's outcome: cancelling one of them ends its wait at
    /// once with `cancelled` and leaves the publish and the other waiter alone, which then gets
    /// the real outcome, as does every later wait.
    @Test func aCancelledWaitForAnOutcomeLeavesTheOtherWaitersTheRealOne() async throws {
        let held = try await HeldWindow.make()
        defer { held.server.kill() }
        let first = held.first
        let cancelledWaiter = Task { await first.result() }
        let otherWaiter = Task { await first.result() }
        // Long enough for both to wait (the publish has no ack coming).
        try await Task.sleep(for: .milliseconds(200))
        cancelledWaiter.cancel()
        guard case .failure(let cancelled) = await cancelledWaiter.value else {
            Issue.record("the cancelled waiter got an outcome the publish does not have")
            return
        }
        #expect(cancelled.code == .cancelled)
        #expect(first.outcome == nil, "cancelling a wait does not end the publish")

        await held.connection.close()
        guard case .failure(let ended) = await otherWaiter.value else {
            Issue.record("the publish cannot have been acked")
            return
        }
        #expect(ended.code != .cancelled, "the other waiter gets the publish's own outcome: \(ended)")
        guard case .failure(let recorded) = first.outcome, case .failure(let later) = await first.result() else {
            Issue.record("the outcome should be recorded once the connection closed")
            return
        }
        #expect(recorded.code == ended.code && later.code == ended.code)
    }

    /// With room for one publish, publishes from many tasks wait their turn and each is stored
    /// once: the waiting path hands the window on as acks come back.
    @Test func publishesWaitingForRoomGoOutAsAcksComeBack() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let connection = try await connect(to: server)
        let js = connection.jetStream()
        try await js.ensureStream(NATSStreamConfiguration(name: "WINDOW", subjects: ["window.>"]))
        let publisher = try await js.makePublisher(configuration: .init(maxPending: 1, ackTimeout: .seconds(10)))
        let sequences = try await withThrowingTaskGroup(of: UInt64.self) { group in
            for index in 0..<50 {
                group.addTask { try await publisher.publish(subject: "window.\(index)", payload: [UInt8(index)]).ack().sequence }
            }
            return try await group.reduce(into: [UInt64]()) { $0.append($1) }
        }
        #expect(Set(sequences) == Set(1...50), "each publish stored once, at its own sequence")
        #expect(publisher.pendingCount == 0)
        await connection.close()
    }

    /// Closing the publisher releases a publish waiting for room with `connectionClosed`; the
    /// publish already in flight keeps its place until its outcome.
    @Test func closingThePublisherReleasesAPublishWaitingForRoom() async throws {
        let held = try await HeldWindow.make()
        defer { held.server.kill() }
        let (connection, publisher, first, second) = (held.connection, held.publisher, held.first, held.second)
        let closing = Task { await publisher.close() }
        let result = await second.result
        if case .failure(let error as NATSError) = result {
            #expect(error.code == .connectionClosed)
        } else {
            Issue.record("the waiting publish should fail as closed, got \(result)")
        }
        #expect(first.outcome == nil, "the publish in flight still waits for its ack")
        #expect(publisher.pendingCount == 1)
        await connection.close()
        await closing.value
        #expect(await first.result().isFailure)
        #expect(publisher.pendingCount == 0)
    }
}

/// A publisher with room for one publish, held by a first publish that nothing answers
/// (something listens on its subject, so it is not "no responders"), and a second publish
/// waiting for room in a task of its own.
private struct HeldWindow {
    let server: NATSServerProcess
    let connection: NATSConnection
    let silent: NATSSubscription
    let publisher: NATSJetStreamPublisher
    let first: NATSPendingPublish
    let second: Task<NATSPendingPublish, any Error>

    static func make() async throws -> HeldWindow {
        let server = try await NATSServerProcess.started()
        do {
            let connection = try await connect(to: server)
            let silent = try await connection.subscribe(to: "silent.>")
            let publisher = try await connection.jetStream().makePublisher(configuration: .init(maxPending: 1, ackTimeout: .seconds(30)))
            let first = try await publisher.publish(subject: "silent.one", payload: Array("1".utf8))
            let second = Task { try await publisher.publish(subject: "silent.two", payload: Array("2".utf8)) }
            // Long enough for the second publish to queue for room.
            try await Task.sleep(for: .milliseconds(200))
            return HeldWindow(server: server, connection: connection, silent: silent, publisher: publisher, first: first, second: second)
        } catch {
            server.kill()
            throw error
        }
    }
}

extension Result {
    fileprivate var isFailure: Bool {
        if case .failure = self { return true }
        return false
    }
}
