import EventBus
import EventBusJetStream
import Foundation
import Logging
import NATS
import NATSTestSupport
import Testing

/// Health and recovery events of the JetStream bus under real faults: a server restart and a
/// server that stops answering (SIGSTOP).
@Suite("JetStreamEventBus health", .serialized)
struct JetStreamEventBusHealthTests {
    static func bus(_ server: NATSServerProcess) throws -> JetStreamEventBus {
        var connection = try NATSConnectionConfiguration(servers: [server.url])
        connection.reconnect.wait = .milliseconds(100)
        connection.reconnect.maxAttempts = .unlimited
        var configuration = JetStreamEventBus.Configuration(connection: connection)
        // Short heartbeats keep the tests quick: silence is noticed after 1 s.
        configuration.consumerIdleHeartbeat = .milliseconds(500)
        var logger = Logger(label: "test.health")
        logger.logLevel = .warning
        return JetStreamEventBus(configuration: configuration, logger: logger)
    }

    /// Publishes, retrying while the server recovers (a restart, a resumed process).
    static func publish(_ bus: JetStreamEventBus, _ subject: String, _ values: Range<Int>) async throws {
        for index in values {
            let event = Event(subject: subject, type: "t", source: "/test", data: Array("\(index)".utf8))
            var stored = false
            for _ in 0..<100 where !stored {
                do {
                    try await bus.publish(event)
                    stored = true
                } catch let error as EventBusError where error.isRetriable {
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            #expect(stored, "event \(index) was never stored")
        }
    }

    /// Polls the one subscription's state and records each change.
    final class StateRecorder: @unchecked Sendable {
        // @unchecked: guarded by `lock`.
        private let lock = NSLock()
        private var states: [EventBusHealth.SubscriptionState] = []
        private var latest: EventBusHealth?

        func record(_ health: EventBusHealth) {
            lock.withLock {
                latest = health
                guard let state = health.subscriptions.first?.state else { return }
                if states.last != state { states.append(state) }
            }
        }

        var history: [EventBusHealth.SubscriptionState] { lock.withLock { states } }
        var last: EventBusHealth? { lock.withLock { latest } }
    }

    static func watch(_ bus: JetStreamEventBus, into recorder: StateRecorder) -> Task<Void, Never> {
        Task {
            while !Task.isCancelled {
                recorder.record(await bus.health())
                try? await Task.sleep(for: .milliseconds(25))
            }
        }
    }

    @Test func aServerRestartShowsRecoveringThenRunningWithTheReasonAndLosesNothing() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let bus = try Self.bus(server)
        let subscription = try await bus.subscribe("health.>", options: .init(group: "workers"))
        let events = Collected<EventBusRecoveryEvent>()
        let listener = Task { for await event in bus.recoveryEvents { events.append(event) } }
        let received = Collected<String>()
        let consumer = Task {
            for try await delivery in subscription {
                received.append(String(decoding: delivery.event.data, as: UTF8.self))
                try await delivery.ack()
            }
        }
        try await Self.publish(bus, "health.before", 0..<30)
        #expect(await eventually { received.count >= 30 })
        let recorder = StateRecorder()
        let watcher = Self.watch(bus, into: recorder)
        #expect(await eventually { recorder.last?.status == .healthy })

        await server.stopped()
        #expect(await eventually { recorder.history.contains(.recovering) }, "states \(recorder.history)")
        #expect(recorder.last?.connection == .reconnecting)
        #expect(recorder.last?.status == .degraded)
        try await server.restarted()
        try await Self.publish(bus, "health.after", 30..<60)
        #expect(await eventually(timeout: .seconds(30)) { received.count >= 60 }, "received \(received.count)")
        #expect(Set(received.values) == Set((0..<60).map(String.init)), "nothing lost")
        #expect(await eventually { recorder.last?.subscriptions.first?.state == .running && recorder.last?.status == .healthy })

        let history = recorder.history
        #expect(history.first == .running, "\(history)")
        #expect(history.last == .running, "\(history)")
        let recoveringAt = try #require(history.firstIndex(of: .recovering), "\(history)")
        #expect(recoveringAt > 0)
        // The pull requests the old connection held are gone: the consumer asked again, and said why.
        #expect(await eventually { events.values.contains { $0.reason == "pullReissued" } }, "\(events.values)")
        #expect(events.values.allSatisfy { $0.pattern == "health.>" && $0.group == "workers" })
        let entry = try #require(await bus.health().subscriptions.first)
        #expect(entry.recoveries >= 1, "\(entry) \(events.values)")
        #expect(entry.lastMessageAge != nil)
        #expect(entry.consumer?.hasPrefix("workers-") == true)

        watcher.cancel()
        consumer.cancel()
        await bus.close()
        listener.cancel()
    }

    @Test func heartbeatsStoppingShowStalledOrRecoveringThenRunningAndLoseNothing() async throws {
        let server = try await NATSServerProcess.started()
        defer {
            server.resume()
            server.stop()
        }
        let bus = try Self.bus(server)
        let subscription = try await bus.subscribe("paused.>", options: .init(group: "workers"))
        let events = Collected<EventBusRecoveryEvent>()
        let listener = Task { for await event in bus.recoveryEvents { events.append(event) } }
        let received = Collected<String>()
        let consumer = Task {
            for try await delivery in subscription {
                received.append(String(decoding: delivery.event.data, as: UTF8.self))
                try await delivery.ack()
            }
        }
        try await Self.publish(bus, "paused.before", 0..<20)
        #expect(await eventually { received.count >= 20 })
        // Idle with an open pull request: the server's heartbeats arrive.
        #expect(await eventually { (await bus.health()).subscriptions.first?.lastHeartbeatAge != nil })
        let recorder = StateRecorder()
        let watcher = Self.watch(bus, into: recorder)

        server.pause()
        #expect(
            await eventually(timeout: .seconds(8)) {
                let state = recorder.last?.subscriptions.first?.state
                return state == .stalled || state == .recovering
            }, "states \(recorder.history)")
        #expect(await eventually { events.values.contains { $0.reason == "heartbeatMissed" } }, "\(events.values)")
        #expect(recorder.last?.isReady == false)
        server.resume()
        try await Self.publish(bus, "paused.after", 20..<40)
        #expect(await eventually(timeout: .seconds(30)) { received.count >= 40 }, "received \(received.count)")
        #expect(Set(received.values) == Set((0..<40).map(String.init)), "nothing lost")
        #expect(await eventually(timeout: .seconds(15)) { recorder.last?.isReady == true }, "states \(recorder.history)")
        #expect(recorder.history.first == .running)
        #expect(recorder.history.last == .running)

        watcher.cancel()
        consumer.cancel()
        await bus.close()
        listener.cancel()
    }

    @Test func aClosedBusIsUnhealthyAndEndsItsRecoveryEvents() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let bus = try Self.bus(server)
        #expect((await bus.health()).connection == .connecting)
        let subscription = try await bus.subscribe("closing.>", options: .init(group: "g"))
        let health = await bus.health()
        #expect(health.connection == .connected)
        #expect(health.subscriptions.map(\.pattern) == ["closing.>"])
        #expect(health.subscriptions.first?.state == .running)
        #expect(health.isReady)
        let listener = Task { () -> Int in
            var count = 0
            for await _ in bus.recoveryEvents { count += 1 }
            return count
        }
        _ = subscription
        await bus.close()
        let closed = await bus.health()
        #expect(closed.connection == .closed)
        #expect(closed.status == .unhealthy)
        let count = try await withDeadline(.seconds(30), "the end of a closed bus's recovery events", onTimeout: { listener.cancel() }) {
            await listener.value
        }
        #expect(count == 0)
    }
}
