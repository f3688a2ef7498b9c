import EventBus
import EventBusJetStream
import Foundation
import NATS
import NATSTestSupport
import Testing

/// The JetStream dead-letter queue against a real server, beyond the conformance check: dead
/// letters from exhausted attempts, a requeue of many interrupted by a closed bus and continued by
/// another, custom dead-letter subjects, and the stream reads it is built on.
@Suite("JetStream dead-letter queue", .serialized)
struct JetStreamDeadLetterQueueTests {
    /// Runs a group on `pattern` whose handler throws until `succeed` holds a value, then records
    /// what it handles (as `<id>@<attempt>`).
    static func worker(
        _ bus: JetStreamEventBus, _ pattern: String, options: SubscriptionOptions, succeed: Collected<Bool>,
        handled: Collected<String>
    ) async throws -> Task<Void, any Error> {
        let subscription = try await bus.subscribe(pattern, options: options)
        return Task {
            try await bus.consume(subscription, options: options) { delivery in
                if succeed.count == 0 {
                    throw EventBusError(.validationFailed, "rejected on attempt \(delivery.deliveryCount)")
                }
                handled.append("\(delivery.event.id)@\(delivery.deliveryCount)")
            }
        }
    }

    static func waitForDeadLetters(_ count: Int, _ queue: any DeadLetterQueue, _ filter: DeadLetterFilter = .init()) async throws {
        let arrived = try await eventually(timeout: .seconds(20)) { try await queue.list(filter, limit: 100).count >= count }
        #expect(arrived, "\(count) dead letters did not arrive")
    }

    @Test func anExhaustedEventIsInspectedAndRequeuedOnce() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let bus = try JetStreamEventBusTests.bus(server)
        let queue = try bus.deadLetterQueue()
        let succeeding = Collected<Bool>()
        let handled = Collected<String>()
        let worker = try await Self.worker(
            bus, "payments.>", options: .init(group: "billing", maxDeliver: 2), succeed: succeeding, handled: handled)
        var event = Event(subject: "payments.settled", type: "payment.settled", source: "/billing", data: Array(#"{"amount":12}"#.utf8))
        event.extensions["tenant"] = "acme"
        event.dataContentType = "application/json"
        let receipt = try await bus.publish(event)
        try await Self.waitForDeadLetters(1, queue)

        let entry = try #require(try await queue.list(.init(), limit: 10).first)
        #expect(entry.attempts == 2 && entry.group == "billing" && entry.originalSequence == receipt.sequence)
        #expect(entry.reason.contains("rejected on attempt 2"), "\(entry.reason)")
        #expect(entry.deadLetterSubject == "deadletter.payments.settled")
        let record = try await queue.inspect(sequence: entry.sequence)
        #expect(record.event.id == event.id && record.event.data == event.data)
        #expect(record.event.extensions == ["tenant": "acme"] && record.event.dataContentType == "application/json")

        succeeding.append(true)
        let first = try await queue.requeue(sequence: entry.sequence, options: .init())
        let second = try await queue.requeue(sequence: entry.sequence, options: .init())
        #expect(!first.receipt.duplicate && second.receipt.duplicate && second.receipt.sequence == first.receipt.sequence)
        #expect(await eventually { handled.count >= 1 })
        try await Task.sleep(for: .milliseconds(500))
        #expect(handled.values == ["\(event.id)@1"], "handled: \(handled.values)")
        // The stream holds the original, the dead letter and one requeued copy.
        let info = try await NATSConnection.connect(configuration: NATSConnectionConfiguration(servers: [server.url]))
        #expect(try await info.jetStream().streamInfo(bus.configuration.streamName).state.messages == 3)
        await info.close()
        worker.cancel()
        await bus.close()
    }

    @Test func aRequeueOfManyStoppedByAClosedBusContinuesOnAnother() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let bus = try JetStreamEventBusTests.bus(server)
        let handled = Collected<String>()
        let worker = try await Self.worker(
            bus, "orders.>", options: .init(group: "shipping", maxDeliver: 1), succeed: Collected<Bool>(), handled: handled)
        for index in 0..<5 {
            try await bus.publish(Event(subject: "orders.created", type: "order.created", source: "/shop", data: Array("\(index)".utf8)))
        }
        try await Self.waitForDeadLetters(5, try bus.deadLetterQueue())
        worker.cancel()
        let all = try await bus.deadLetterQueue().list(.init(), limit: 10)

        let operatorBus = try JetStreamEventBusTests.bus(server)
        let operatorQueue = try operatorBus.deadLetterQueue()
        let orders = DeadLetterFilter(subjects: try SubjectPattern("orders.>"))
        var stopped: DeadLetterRequeueError?
        do throws(DeadLetterRequeueError) {
            try await operatorQueue.requeue(orders) { _, progress in
                if progress.processed == 2 { await operatorBus.close() }
            }
        } catch {
            stopped = error
        }
        let error = try #require(stopped)
        #expect(error.progress.requeued == 2 && error.progress.lastSequence == all[1].sequence, "\(error)")
        #expect(error.failedSequence == all[2].sequence)
        #expect((error.error as? EventBusError)?.code == .closed, "\(error.error)")

        let resumed = try await bus.deadLetterQueue().requeue(.init(after: try #require(error.progress.lastSequence)))
        #expect(resumed.requeued == 3 && resumed.duplicates == 0 && resumed.lastSequence == all[4].sequence, "\(resumed)")
        let again = try await bus.deadLetterQueue().requeue(.init(), options: .init(removeAfterRequeue: true))
        #expect(again.duplicates == 5 && again.requeued == 0 && again.removed == 5, "\(again)")
        #expect(try await bus.deadLetterQueue().list(.init(), limit: 10).isEmpty)
        await bus.close()
    }

    @Test func customDeadLetterSubjectsAreFoundWhenNamed() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let bus = try JetStreamEventBusTests.bus(server)
        let handled = Collected<String>()
        let worker = try await Self.worker(
            bus, "orders.*", options: .init(group: "audit", maxDeliver: 1, deadLetterSubject: "graveyard.orders"),
            succeed: Collected<Bool>(), handled: handled)
        try await bus.publish(Event(subject: "orders.created", type: "order.created", source: "/shop"))
        let queue = try bus.deadLetterQueue()
        let graveyard = DeadLetterFilter(subjects: try SubjectPattern("orders.*"), deadLetterSubjects: try SubjectPattern("graveyard.>"))
        try await Self.waitForDeadLetters(1, queue, graveyard)
        #expect(try await queue.list(.init(), limit: 10).isEmpty, "the default location holds nothing")
        let entry = try #require(try await queue.list(graveyard, limit: 10).first)
        #expect(entry.deadLetterSubject == "graveyard.orders" && entry.originalSubject == "orders.created")
        var elsewhere = graveyard
        elsewhere.subjects = try SubjectPattern("payments.*")
        #expect(try await queue.list(elsewhere, limit: 10).isEmpty)
        #expect(try await queue.purge(graveyard) == 1)
        worker.cancel()
        await bus.close()
    }

    @Test func streamReadsByNextSubjectAndDeletesBySequence() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let connection = try await NATSConnection.connect(configuration: NATSConnectionConfiguration(servers: [server.url]))
        let jetStream = connection.jetStream()
        try await jetStream.ensureStream(NATSStreamConfiguration(name: "SCAN", subjects: ["scan.>"]))
        for subject in ["scan.a", "scan.b", "scan.a", "scan.b"] {
            _ = try await jetStream.publish(subject: subject, payload: Array(subject.utf8))
        }
        let first = try #require(try await jetStream.message(stream: "SCAN", firstAtOrAfter: 1, subject: "scan.b"))
        #expect(first.sequence == 2 && first.subject == "scan.b")
        let next = try #require(try await jetStream.message(stream: "SCAN", firstAtOrAfter: 3, subject: "scan.b"))
        #expect(next.sequence == 4)
        #expect(try await jetStream.message(stream: "SCAN", firstAtOrAfter: 5, subject: "scan.b") == nil)
        #expect(try await jetStream.deleteMessage(stream: "SCAN", sequence: 2))
        #expect(try await jetStream.deleteMessage(stream: "SCAN", sequence: 2) == false)
        // Past the last sequence is the server's error, not "already gone".
        await #expect(throws: NATSError.self) { try await jetStream.deleteMessage(stream: "SCAN", sequence: 99) }
        #expect(try await jetStream.message(stream: "SCAN", firstAtOrAfter: 1, subject: "scan.b")?.sequence == 4)
        await #expect(throws: NATSError.self) { try await jetStream.message(stream: "SCAN", firstAtOrAfter: 0, subject: "scan.b") }
        await #expect(throws: NATSError.self) { try await jetStream.message(stream: "SCAN", firstAtOrAfter: 1, subject: "scan..b") }
        await #expect(throws: NATSError.self) { try await jetStream.deleteMessage(stream: "SC.AN", sequence: 1) }
        await connection.close()
    }
}
