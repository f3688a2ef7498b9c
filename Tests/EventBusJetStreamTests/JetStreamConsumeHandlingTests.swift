import EventBus
import EventBusJetStream
import Foundation
import Logging
import NATS
import NATSTestSupport
import Testing

/// `consume`'s handler options where JetStream's bus configuration stands in for the library's defaults.
@Suite("JetStreamEventBus consume handling")
struct JetStreamConsumeHandlingTests {
    static func bus(_ server: NATSServerProcess, _ adjust: (inout JetStreamEventBus.Configuration) -> Void) throws -> JetStreamEventBus {
        var connection = try NATSConnectionConfiguration(servers: [server.url])
        connection.reconnect.wait = .milliseconds(100)
        var configuration = JetStreamEventBus.Configuration(connection: connection)
        adjust(&configuration)
        var logger = Logger(label: "test.bus")
        logger.logLevel = .warning
        return JetStreamEventBus(configuration: configuration, logger: logger)
    }

    @Test func handlerConcurrencyAboveTheBusMaxAckPendingIsRejectedNamingIt() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let bus = try Self.bus(server) { $0.maxAckPending = 2 }
        do {
            // maxInFlight keeps the library default, so the bus's maxAckPending is what limits.
            _ = try await bus.subscribe("limited", options: .init(group: "workers", handlerConcurrency: 3))
            Issue.record("handlerConcurrency 3 accepted with maxAckPending 2")
        } catch let error as EventBusError {
            #expect(error.code == .invalidOption)
            #expect(error.message.contains("handlerConcurrency 3 exceeds maxAckPending 2"), "\(error.message)")
        }
        // An explicit maxInFlight is the consumer's MaxAckPending and allows it.
        let subscription = try await bus.subscribe("limited", options: .init(maxInFlight: 4, handlerConcurrency: 3))
        await subscription.close()
        await bus.close()
    }

    @Test func theBusAckWaitDrivesTheExtensionWhenOptionsKeepTheDefault() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        // The consumer's ack wait is the bus's 2 s, not the options' default 30 s: in-progress must come
        // within two seconds (the extension sends it after one, leaving a loaded machine a second).
        let bus = try Self.bus(server) { $0.ackWait = .seconds(2) }
        let options = SubscriptionOptions(group: "slow")
        let attempts = Collected<Int>()
        let finished = Collected<Bool>()
        let subscription = try await bus.subscribe("slow.work", options: options)
        let consumer = Task {
            try await bus.consume(subscription, options: options) { delivery in
                attempts.append(delivery.deliveryCount)
                if attempts.count == 1 { try await Task.sleep(for: .seconds(5)) }
                finished.append(true)
            }
        }
        try await bus.publish(Event(subject: "slow.work", type: "t", source: "/test", data: Array("x".utf8)))
        #expect(await eventually(timeout: .seconds(20)) { finished.count >= 1 })
        // A redelivery would arrive within one ack wait of the expiry.
        try await Task.sleep(for: .milliseconds(2_500))
        #expect(attempts.values == [1], "attempts: \(attempts.values)")
        consumer.cancel()
        try await withDeadline(.seconds(30), "consume() after its task was cancelled", onTimeout: { await bus.close() }) {
            _ = await consumer.result
        }
        await bus.close()
    }

    /// Publishes `count` events on `subject` one at a time, and waits until `handled` holds them all.
    private func publish(_ count: Int, on subject: String, through bus: JetStreamEventBus, until handled: Collected<Int>) async throws {
        for index in 0..<count {
            try await bus.publish(Event(subject: subject, type: "t", source: "/test", data: Array("\(index)".utf8)))
        }
        #expect(await eventually(timeout: .seconds(30)) { handled.count >= count }, "handled \(handled.count) of \(count)")
    }

    @Test func aHandlerThatStaysOnTheDeliveryThreadIsRunThereForEveryEvent() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let bus = try Self.bus(server) { _ in }
        let options = SubscriptionOptions(group: "inline")
        let subscription = try await bus.subscribe("inline.work", options: options)
        let deliveryThread = try #require(subscription.consumer?.deliveryThread, "a JetStream group offers its delivery thread")
        let handled = Collected<Int>()
        let consumer = Task {
            try await bus.consume(subscription, options: options) { delivery in
                handled.append(Int(String(decoding: delivery.event.data, as: UTF8.self)) ?? -1)
            }
        }
        try await publish(50, on: "inline.work", through: bus, until: handled)
        #expect(handled.values == Array(0..<50))
        // Entering the loop's preference from the pool is one job passed on, and so is each
        // wake-up of the idle wait by its timer (one a second without events: a slow machine or a
        // sanitizer). Steps not run on the delivery thread would be passed on, one per event (50).
        #expect(deliveryThread.forwardedJobCount() <= 4, "forwarded \(deliveryThread.forwardedJobCount())")
        consumer.cancel()
        _ = await consumer.result
        await bus.close()
    }

    @Test func aSubscribeLoopPreferringTheDeliveryExecutorRunsOnTheDeliveryThread() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let bus = try Self.bus(server) { _ in }
        let subscription = try await bus.subscribe("loop.work", options: SubscriptionOptions(group: "loop"))
        let deliveryThread = try #require(subscription.consumer?.deliveryThread)
        let executor = try #require(subscription.deliveryExecutor, "a JetStream subscription offers its delivery thread")
        let started = ThreadRecord()
        let bodies = ThreadRecord()
        let handled = Collected<Int>()
        let loop = Task(executorPreference: executor) {
            started.record()
            for try await delivery in subscription {
                bodies.record()
                try await delivery.ack()
                handled.append(Int(String(decoding: delivery.event.data, as: UTF8.self)) ?? -1)
            }
        }
        // One at a time, so that each event ends a wait of the loop.
        for index in 0..<30 {
            try await bus.publish(Event(subject: "loop.work", type: "t", source: "/test", data: Array("\(index)".utf8)))
            #expect(await eventually(timeout: .seconds(30)) { handled.count > index }, "handled \(handled.count)")
        }
        #expect(handled.values == Array(0..<30))
        // Each step after a wait ran on the one delivery thread, not the pool thread the task
        // started on; the executor passed on the task's start and at most a few timer wake-ups
        // of the idle wait (a step resumed the ordinary way would be one per event). The first
        // event is left out: the loop's first pull request goes out from its start on the pool,
        // and the event may be buffered before the loop waits for it.
        let afterFirst = Set(bodies.threads.dropFirst())
        #expect(afterFirst.count == 1, "bodies ran on \(afterFirst.count) threads")
        #expect(afterFirst != Set(started.threads))
        #expect(deliveryThread.forwardedJobCount() <= 10, "forwarded \(deliveryThread.forwardedJobCount())")
        loop.cancel()
        _ = await loop.result
        await subscription.close()
        await bus.close()
    }

    @Test func aHandlerThatCallsAnActorSendsTheLoopBackToThePool() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let bus = try Self.bus(server) { _ in }
        let options = SubscriptionOptions(group: "actors")
        let subscription = try await bus.subscribe("actor.work", options: options)
        let deliveryThread = try #require(subscription.consumer?.deliveryThread)
        let tally = Tally()
        let handled = Collected<Int>()
        let consumer = Task {
            try await bus.consume(subscription, options: options) { delivery in
                // Each return from the actor is a job queued on the preferred executor, which the
                // loop stops paying for once a few handlers did this.
                for _ in 0..<3 { await tally.add() }
                handled.append(Int(String(decoding: delivery.event.data, as: UTF8.self)) ?? -1)
            }
        }
        try await publish(40, on: "actor.work", through: bus, until: handled)
        #expect(handled.values == Array(0..<40))
        #expect(await tally.count == 120)
        // Preferring the executor throughout would pass on at least one job per actor call (120).
        let forwarded = deliveryThread.forwardedJobCount()
        #expect(forwarded >= DeliveryThreadLoop.handlersLeavingBeforeTheLoopDoes && forwarded < 40, "forwarded \(forwarded)")
        consumer.cancel()
        _ = await consumer.result
        await bus.close()
    }
}

private actor Tally {
    var count = 0
    func add() { count += 1 }
}

