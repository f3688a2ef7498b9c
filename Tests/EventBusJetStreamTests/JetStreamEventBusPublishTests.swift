import EventBus
import EventBusJetStream
import Foundation
import Logging
import NATS
import NATSTestSupport
import Testing

/// The bus writes a lone publish at once and leaves concurrent ones to cnats's flusher, both
/// through its one publish window; both must give the same receipts.
@Suite("JetStreamEventBus publish paths", .tags(.server))
struct JetStreamEventBusPublishTests {
    /// A started bus on `server`, its stream in memory.
    static func startedBus(on server: NATSServerProcess) async throws -> JetStreamEventBus {
        var configuration = JetStreamEventBus.Configuration(connection: try NATSConnectionConfiguration(servers: [server.url]))
        configuration.storage = .memory
        var logger = Logger(label: "test.bus")
        logger.logLevel = .warning
        let bus = JetStreamEventBus(configuration: configuration, logger: logger)
        try await bus.start()
        return bus
    }

    @Test func lonePublishesAndConcurrentPublishesGiveTheSameReceipts() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let bus = try await Self.startedBus(on: server)

        // One at a time: the direct path. A repeated id is a duplicate.
        let first = Event(id: "lone-1", subject: "paths.lone", type: "t", source: "/s", data: [1])
        let stored = try await bus.publish(first)
        let again = try await bus.publish(first)
        #expect(!stored.duplicate && again.duplicate && again.sequence == stored.sequence)

        // Many at once: most join the window; every one is stored once, in its own sequence.
        let receipts = try await withThrowingTaskGroup(of: PublishReceipt.self) { group in
            for index in 0..<500 {
                group.addTask {
                    try await bus.publish(Event(id: "many-\(index % 250)", subject: "paths.many", type: "t", source: "/s", data: [2]))
                }
            }
            var receipts: [PublishReceipt] = []
            for try await receipt in group { receipts.append(receipt) }
            return receipts
        }
        #expect(receipts.count == 500)
        #expect(receipts.filter { !$0.duplicate }.count == 250, "each id stored once")
        #expect(Set(receipts.filter { !$0.duplicate }.map(\.sequence)).count == 250)

        // Cancelling a lone publish while it waits for its ack throws CancellationError.
        let cancelled = Task {
            try await Task.sleep(for: .milliseconds(1))
            return try await bus.publish(Event(subject: "paths.cancel", type: "t", source: "/s"))
        }
        cancelled.cancel()
        do {
            _ = try await cancelled.value
        } catch {
            #expect(error is CancellationError)
        }
        await bus.close()
    }

    /// With a publish window of 4, most publishes find it full and wait for room (the path a
    /// publish takes only under load); lone and batched publishes alike are stored once each.
    @Test func publishesThatFindTheWindowFullWaitForRoomAndAreStoredOnce() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        var configuration = JetStreamEventBus.Configuration(connection: try NATSConnectionConfiguration(servers: [server.url]))
        configuration.storage = .memory
        configuration.maxPendingPublishes = 4
        var logger = Logger(label: "test.bus")
        logger.logLevel = .warning
        let bus = JetStreamEventBus(configuration: configuration, logger: logger)

        // The first publishes also start the bus: they wait for its start, then for room.
        let lone = try await withThrowingTaskGroup(of: PublishReceipt.self) { group in
            for index in 0..<200 {
                group.addTask {
                    try await bus.publish(Event(id: "full-\(index)", subject: "paths.full", type: "t", source: "/s", data: [3]))
                }
            }
            return try await group.reduce(into: [PublishReceipt]()) { $0.append($1) }
        }
        let batch = try await bus.publish(
            contentsOf: (0..<50).map { Event(id: "full-batch-\($0)", subject: "paths.full", type: "t", source: "/s", data: [4]) })
        #expect(lone.allSatisfy { !$0.duplicate } && batch.allSatisfy { !$0.duplicate })
        #expect(Set((lone + batch).map(\.sequence)) == Set(1...250), "each event stored once, at its own sequence")
        #expect(batch.map(\.sequence) == Array(201...250), "a batch's receipts in its order")
        await bus.close()
    }

    /// DESIGN rule 13: an event whose NATS subject (after the bus's prefix) is longer than the
    /// server's control line fails alone, before the wire; the bus keeps working.
    @Test func aTooLongSubjectFailsAloneAndTheNextPublishSucceeds() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let bus = try await Self.startedBus(on: server)

        // 4,090 bytes fit alone; `events.` makes the NATS subject too long for 4,096.
        let long = String(repeating: "x", count: 4_090)
        for _ in 0..<2 {
            do {
                _ = try await bus.publish(Event(subject: long, type: "t", source: "/s", data: [1]))
                Issue.record("an event with a too-long subject was published")
            } catch let error as EventBusError {
                #expect(error.code == .invalidSubject)
                #expect(error.message.contains("4097 bytes") && error.message.contains("4096"), "\(error)")
            }
        }
        // Concurrent publishes take the asynchronous window: checked there too.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    do {
                        _ = try await bus.publish(Event(subject: long, type: "t", source: "/s", data: [1]))
                        Issue.record("an event with a too-long subject was published")
                    } catch let error as EventBusError {
                        #expect(error.code == .invalidSubject)
                    }
                }
            }
            try await group.waitForAll()
        }
        let receipt = try await bus.publish(Event(subject: "fine.after", type: "t", source: "/s", data: [2]))
        #expect(!receipt.duplicate && receipt.sequence >= 1)
        await bus.close()
    }
}

extension Tag {
    @Tag static var server: Self
}
