import NATSTestSupport
import Testing

@testable import NATS

/// Iterating from a task that prefers a subscription's or a consumer's `deliveryExecutor`: each
/// message that ends the loop's wait is handled on cnats's delivery thread, in order, and leaving
/// the loop there (a `break`, which unsubscribes from that thread) ends it cleanly.
@Suite("Iterating on the delivery thread", .tags(.server))
struct DeliveryExecutorIterationTests {
    static let count = 30

    @Test func aCoreSubscriptionIteratedOnItsDeliveryThread() async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        let connection = try await connect(to: server)
        let subscription = try await connection.subscribe(to: "inline.core")
        let run = PreferredLoop(executor: subscription.deliveryExecutor)
        try await run.handleOneAtATime(subscription, waitingOn: subscription.handle.buffer, settle: { _ in }) { index in
            try connection.publish(subject: "inline.core", payload: Array("\(index)".utf8))
        }
        run.expectRanOnTheDeliveryThread(forwarded: subscription.handle.buffer.consumerExecutor.forwardedJobCount)

        // The `break` unsubscribed from the delivery thread; the connection goes on.
        let next = try await connection.subscribe(to: "inline.after")
        try connection.publish(subject: "inline.after", payload: Array("after".utf8))
        let after = try await withDeadline(.seconds(10), "a message after the loop ended") {
            var iterator = next.makeAsyncIterator()
            return try await iterator.next()?.payload.string
        }
        #expect(after == "after")
        await connection.close()
    }

    @Test func aPushConsumerIteratedOnItsDeliveryThread() async throws {
        let (server, connection, js) = try await Self.setUp(stream: "INLINEPUSH", subject: "inline.push")
        defer { server.kill() }
        let consumer = try await js.pushConsumer(
            stream: "INLINEPUSH", configuration: NATSConsumerConfiguration(durableName: "inline-push"))
        let run = PreferredLoop(executor: consumer.deliveryExecutor)
        try await run.handleOneAtATime(consumer, waitingOn: consumer.handle.buffer, settle: { try $0.ack() }) { index in
            _ = try await js.publish(subject: "inline.push", payload: Array("\(index)".utf8))
        }
        run.expectRanOnTheDeliveryThread(forwarded: consumer.deliveryThreadExecutor.forwardedJobCount)
        try await Self.expectAllAcked(js, connection, stream: "INLINEPUSH", consumer: "inline-push")
    }

    @Test func aPullConsumerIteratedOnItsDeliveryThread() async throws {
        let (server, connection, js) = try await Self.setUp(stream: "INLINEPULL", subject: "inline.pull")
        defer { server.kill() }
        try await js.ensureConsumer(stream: "INLINEPULL", NATSConsumerConfiguration(durableName: "inline-pull"))
        let consumer = try await js.pullConsumer(stream: "INLINEPULL", name: "inline-pull")
        let run = PreferredLoop(executor: consumer.deliveryExecutor)
        try await run.handleOneAtATime(consumer, waitingOn: consumer.handle.buffer, settle: { try $0.ack() }) { index in
            _ = try await js.publish(subject: "inline.pull", payload: Array("\(index)".utf8))
        }
        // A pull consumer's idle wait also ends by its timer (a job from another thread), at
        // most about once a second here.
        run.expectRanOnTheDeliveryThread(forwarded: consumer.deliveryThreadExecutor.forwardedJobCount, timerWakeups: 10)
        try await Self.expectAllAcked(js, connection, stream: "INLINEPULL", consumer: "inline-pull")
    }

    /// Every message the loop acked reached the server; closes the connection.
    static func expectAllAcked(_ js: NATSJetStream, _ connection: NATSConnection, stream: String, consumer: String) async throws {
        try await connection.flush()
        #expect(await eventually { (try? await js.consumerInfo(stream: stream, name: consumer).ackPendingCount) == 0 })
        await connection.close()
    }

    static func setUp(stream: String, subject: String) async throws -> (NATSServerProcess, NATSConnection, NATSJetStream) {
        let server = try await NATSServerProcess.started()
        let connection = try await connect(to: server)
        let js = connection.jetStream()
        try await js.ensureStream(NATSStreamConfiguration(name: stream, subjects: [subject]))
        return (server, connection, js)
    }
}

/// A task preferring `executor` that iterates a sequence until it handled
/// ``DeliveryExecutorIterationTests/count`` messages, recording where each step ran.
private struct PreferredLoop: Sendable {
    let executor: any TaskExecutor
    let handled = Collected<Int>()
    /// The thread that ran the task's first step (before its first wait): a pool thread.
    let start = ThreadRecord()
    /// The thread that handled each message.
    let bodies = ThreadRecord()

    func start<Messages: AsyncSequence & Sendable>(
        _ messages: Messages, settle: @escaping @Sendable (Messages.Element) throws -> Void
    ) -> Task<Void, any Error> where Messages.Element: PayloadCarrying {
        Task(executorPreference: executor) {
            start.record()
            for try await message in messages {
                bodies.record()
                try settle(message)
                handled.append(Int(message.payloadString) ?? -1)
                if handled.count == DeliveryExecutorIterationTests.count { break }
            }
        }
    }

    /// Starts the loop over `messages`, then publishes each message with `publish` once the loop
    /// waits for it (so that it ends a wait) and only after the previous one was handled, and
    /// returns when the loop has ended with a `break`.
    func handleOneAtATime<Messages: AsyncSequence & Sendable, Element>(
        _ messages: Messages, waitingOn buffer: BoundedBatchBuffer<Element>,
        settle: @escaping @Sendable (Messages.Element) throws -> Void, publish: (Int) async throws -> Void
    ) async throws where Messages.Element: PayloadCarrying {
        let worker = start(messages, settle: settle)
        for index in 0..<DeliveryExecutorIterationTests.count {
            try await whenWaiting(buffer)
            try await publish(index)
            try await whenHandled(index + 1)
        }
        try await finished(worker)
    }

    /// Returns once the loop waits for its next message (so that the message ends a wait).
    func whenWaiting<Element>(_ buffer: BoundedBatchBuffer<Element>) async throws {
        #expect(await eventually { buffer.hasWaitingConsumer }, "the loop waits after \(handled.count) messages")
    }

    func whenHandled(_ count: Int) async throws {
        #expect(await eventually { handled.count >= count }, "handled \(handled.count) of \(count)")
    }

    func finished(_ worker: Task<Void, any Error>) async throws {
        try await withDeadline(.seconds(10), "the loop's end after a break", onTimeout: { worker.cancel() }) {
            try await worker.value
        }
    }

    /// Every message was handled, in order, on one thread other than the pool thread the task
    /// started on, and the executor passed on only the task's start (and `timerWakeups`): a step
    /// resumed the ordinary way would have been passed on, one per message.
    func expectRanOnTheDeliveryThread(forwarded: Int, timerWakeups: Int = 0) {
        #expect(handled.values == Array(0..<DeliveryExecutorIterationTests.count))
        let threads = Set(bodies.threads)
        #expect(threads.count == 1, "bodies ran on \(threads.count) threads")
        #expect(threads != Set(start.threads), "the bodies ran on the thread the task started on")
        #expect(forwarded <= 1 + timerWakeups, "forwarded \(forwarded) jobs for \(DeliveryExecutorIterationTests.count) messages")
    }
}

/// The messages the loop above reads: a core message or a JetStream one.
private protocol PayloadCarrying {
    var payloadString: String { get }
}

extension NATSMessage: PayloadCarrying {
    var payloadString: String { payload.string }
}

extension NATSJetStreamMessage: PayloadCarrying {
    var payloadString: String { payload.string }
}
