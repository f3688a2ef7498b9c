import EventBus
import Foundation
import NATSTestSupport
import Testing

/// The in-memory dead-letter queue beyond the conformance check: dead letters from exhausted
/// attempts, the requeue options, a requeue of many stopped by a real failure, and validation.
@Suite("In-memory dead-letter queue")
struct DeadLetterQueueTests {
    /// Publishes `count` events on `subject` to a group whose handler always throws, and waits until
    /// each is dead-lettered after `maxDeliver` attempts; returns the events.
    static func deadLettered(
        _ count: Int, on subject: String, bus: InMemoryEventBus, maxDeliver: Int = 2
    ) async throws -> [Event] {
        let queue = try bus.deadLetterQueue()
        let options = SubscriptionOptions(group: "billing", maxDeliver: maxDeliver)
        let subscription = try await bus.subscribe(SubjectPattern(subject), options: options)
        let consumer = Task {
            try await bus.consume(subscription, options: options) { delivery in
                throw TestFailure(text: "card declined on attempt \(delivery.deliveryCount)")
            }
        }
        var events: [Event] = []
        for index in 0..<count {
            var event = makeEvent(subject, "payment \(index)")
            event.extensions["tenant"] = "acme"
            event.correlationID = "corr-\(index)"
            try await bus.publish(event)
            events.append(event)
        }
        let filter = DeadLetterFilter(subjects: try SubjectPattern(subject))
        let deadline = ContinuousClock.now + .seconds(20)
        while try await queue.list(filter, limit: 100).count < count, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        consumer.cancel()
        try await withDeadline(.seconds(30), "consume() after its task was cancelled", onTimeout: { await subscription.close() }) {
            _ = await consumer.result
        }
        return events
    }

    struct TestFailure: Error, CustomStringConvertible {
        let text: String
        var description: String { text }
    }

    @Test func anExhaustedEventIsInspectedAndRequeuedAsAFirstAttempt() async throws {
        let bus = try InMemoryEventBus()
        let queue = try bus.deadLetterQueue()
        let events = try await Self.deadLettered(1, on: "payments.settled", bus: bus, maxDeliver: 3)
        let entry = try #require(try await queue.list(.init(), limit: 10).first)
        #expect(entry.attempts == 3)
        #expect(entry.reason.contains("card declined on attempt 3"), "\(entry.reason)")
        #expect(entry.group == "billing" && entry.originalSubject == "payments.settled")
        #expect(entry.deadLetterSubject == "deadletter.payments.settled")
        #expect(entry.size == events[0].data.count)

        let record = try await queue.inspect(sequence: entry.sequence)
        #expect(record.event == events[0], "the inspected event differs from the one published")

        // Requeued and removed: a fresh subscriber of the original subject sees attempt 1.
        let subscription = try await bus.subscribe("payments.settled", options: .init(group: "billing-2", start: .new))
        let outcome = try await queue.requeue(sequence: entry.sequence, options: .init(removeAfterRequeue: true))
        #expect(outcome.removed && !outcome.receipt.duplicate)
        let delivered = try await take(1, from: subscription)
        #expect(delivered[0].event.id == events[0].id && delivered[0].deliveryCount == 1)
        #expect(try await queue.list(.init(), limit: 10).isEmpty, "the dead letter was not removed")
        await #expect(throws: EventBusError.self) { try await queue.requeue(sequence: entry.sequence, options: .init()) }
        #expect(bus.statistics().retainedEvents == 2, "the original and the requeued event remain")
        await subscription.close()
    }

    @Test func aNewEventIDIsStillDeduplicatedPerDeadLetter() async throws {
        let bus = try InMemoryEventBus()
        let queue = try bus.deadLetterQueue()
        let events = try await Self.deadLettered(1, on: "orders.created", bus: bus)
        let entry = try #require(try await queue.list(.init(), limit: 1).first)
        let first = try await queue.requeue(sequence: entry.sequence, options: .init(newEventID: true))
        #expect(first.eventID != events[0].id)
        let second = try await queue.requeue(sequence: entry.sequence, options: .init(newEventID: true))
        #expect(second.receipt.duplicate && second.receipt.sequence == first.receipt.sequence)
    }

    @Test func aRequeueOfManyStoppedByAClosedClientContinuesWhereItStopped() async throws {
        let bus = try InMemoryEventBus()
        _ = try await Self.deadLettered(5, on: "orders.created", bus: bus)
        let operatorClient = bus.newClient()
        let queue = try operatorClient.deadLetterQueue()
        let all = try await queue.list(.init(), limit: 10)
        #expect(all.count == 5)
        var stopped: DeadLetterRequeueError?
        do throws(DeadLetterRequeueError) {
            // The client closes after the second requeue: the third publish is refused.
            try await queue.requeue(.init()) { _, progress in
                if progress.processed == 2 { await operatorClient.close() }
            }
        } catch {
            stopped = error
        }
        let error = try #require(stopped)
        #expect(error.progress.requeued == 2 && error.progress.lastSequence == all[1].sequence, "\(error)")
        #expect(error.failedSequence == all[2].sequence)
        #expect((error.error as? EventBusError)?.code == .closed)
        #expect(error.description.contains("continue after sequence \(all[1].sequence)"), "\(error)")

        let resumed = try await bus.newClient().deadLetterQueue()
            .requeue(DeadLetterFilter(after: try #require(error.progress.lastSequence)))
        #expect(resumed.requeued == 3 && resumed.duplicates == 0 && resumed.lastSequence == all[4].sequence)
    }

    @Test func purgeByTimeAndSequencesAndEverything() async throws {
        let bus = try InMemoryEventBus()
        let queue = try bus.deadLetterQueue()
        _ = try await Self.deadLettered(3, on: "orders.created", bus: bus)
        _ = try await Self.deadLettered(2, on: "orders.cancelled", bus: bus)
        let all = try await queue.list(.init(), limit: 10)
        #expect(try await queue.purge(.init(until: Date() - 3600)) == 0)
        #expect(try await queue.purge(.init(subjects: try SubjectPattern("orders.cancelled"))) == 2)
        #expect(try await queue.remove(sequence: all[0].sequence))
        #expect(try await queue.remove(sequence: all[0].sequence) == false)
        #expect(try await queue.purge(.init(since: Date() - 3600)) == 2)
        #expect(try await queue.list(.init(), limit: 10).isEmpty)
        // A consumer of the original subject from the start still sees the originals.
        let replay = try await bus.subscribe("orders.>", options: .init(start: .all))
        #expect(try await take(5, from: replay).count == 5)
        await replay.close()
    }

    @Test func badInputFailsBeforeAnythingIsRead() async throws {
        let queue = try InMemoryEventBus().deadLetterQueue()
        await #expect(throws: EventBusError.self) { try await queue.list(.init(), limit: 0) }
        await #expect(throws: EventBusError.self) {
            try await queue.list(.init(), limit: DeadLetterQueueLimits.maxPageSize + 1)
        }
        let now = Date()
        #expect(throws: EventBusError.self) { try DeadLetterFilter(since: now, until: now).validate() }
        #expect(throws: EventBusError.self) { try DeadLetterFilter(group: "").validate() }
        await #expect(throws: EventBusError.self) { try await queue.inspect(sequence: 42) }
    }

    @Test func middlewareForwardsTheQueueAndOtherBusesSayTheyHaveNone() async throws {
        let memory = try InMemoryEventBus()
        _ = try await Self.deadLettered(1, on: "orders.created", bus: memory)
        let wrapped = try RetryingEventBus(CorrelatingEventBus(memory))
        #expect(try await wrapped.deadLetterQueue().list(.init(), limit: 10).count == 1)
        #expect(wrapped.capabilities.contains(.deadLetterQueue))
        do {
            _ = try NoopEventBus().deadLetterQueue()
            Issue.record("the no-op bus offered a dead-letter queue")
        } catch {
            #expect(error.code == .unsupported)
        }
    }

    @Test func filterScansTheDeadLetterSubjectsOfAnOriginalPattern() throws {
        let filter = DeadLetterFilter(subjects: try SubjectPattern("orders.*"))
        #expect(filter.scanPattern.rawValue == "deadletter.orders.*")
        let custom = DeadLetterFilter(subjects: try SubjectPattern("orders.*"), deadLetterSubjects: try SubjectPattern("graveyard.>"))
        #expect(custom.scanPattern.rawValue == "graveyard.>", "a custom location is scanned whole, the pattern checked per entry")
    }
}
