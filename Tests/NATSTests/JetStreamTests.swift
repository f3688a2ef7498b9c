import Foundation
@testable import NATS
import NATSTestSupport
import Testing

@Suite("JetStream against a real server", .tags(.server))
struct JetStreamTests {
    @Test func ensureStreamIsIdempotentUpdatesAndRefusesImmutableChanges() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let connection = try await connect(to: server)
        let js = connection.jetStream()
        var configuration = NATSStreamConfiguration(name: "ORDERS", subjects: ["orders.>"])
        let created = try await js.ensureStream(configuration)
        #expect(created.configuration.subjects == ["orders.>"])
        let again = try await js.ensureStream(configuration)
        #expect(again.configuration.differences(from: created.configuration).isEmpty)

        configuration.maxMessages = 1_000
        configuration.subjects = ["orders.>", "refunds.>"]
        configuration.duplicateWindow = .seconds(30)
        let updated = try await js.ensureStream(configuration)
        #expect(updated.configuration.maxMessages == 1_000)
        #expect(Set(updated.configuration.subjects) == ["orders.>", "refunds.>"])
        #expect(updated.configuration.duplicateWindow == .seconds(30))

        configuration.storage = .memory
        let error = await #expect(throws: NATSError.self) { try await js.ensureStream(configuration) }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.message.contains("storage file → memory") == true, "\(error?.message ?? "")")
        #expect(try await js.streamInfo("ORDERS").configuration.storage == .file)

        let missing = await #expect(throws: NATSError.self) { try await js.streamInfo("NOPE") }
        #expect(missing?.jetStreamErrorCode == NATSJetStreamErrorCode.streamNotFound)
        try await js.deleteStream("ORDERS")
        await connection.close()
    }

    @Test func purgeAllOrBySubject() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let connection = try await connect(to: server)
        let js = connection.jetStream()
        try await js.ensureStream(NATSStreamConfiguration(name: "P", subjects: ["p.>"]))
        for index in 0..<10 { _ = try await js.publish(subject: index % 2 == 0 ? "p.even" : "p.odd", payload: [UInt8(index)]) }
        #expect(try await js.purgeStream("P", subject: "p.even") == 5)
        #expect(try await js.streamInfo("P").state.messages == 5)
        #expect(try await js.purgeStream("P") == 5)
        #expect(try await js.streamInfo("P").state.messages == 0)
        await connection.close()
    }

    @Test func asyncPublishesAreAckedInOrderAndDuplicatesStoredOnce() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let connection = try await connect(to: server)
        let js = connection.jetStream()
        try await js.ensureStream(NATSStreamConfiguration(name: "EVENTS", subjects: ["events.>"]))
        let publisher = try await js.makePublisher()
        var pending: [NATSPendingPublish] = []
        for index in 0..<10_000 {
            pending.append(try await publisher.publish(subject: "events.created", payload: Array("event \(index)".utf8)))
        }
        var sequences: [UInt64] = []
        for publish in pending { sequences.append(try await publish.ack().sequence) }
        #expect(sequences == Array(1...10_000))
        #expect(publisher.pendingCount == 0)

        // The same message id twice inside the window: stored once, the second flagged.
        let first = try await js.publish(subject: "events.paid", payload: [1], options: .init(messageID: "order-7"))
        let second = try await js.publish(subject: "events.paid", payload: [1], options: .init(messageID: "order-7"))
        #expect(!first.duplicate)
        #expect(second.duplicate)
        #expect(second.sequence == first.sequence)
        let resent = try await publisher.resend(pending[0]).ack()
        #expect(resent.duplicate && resent.sequence == 1)
        #expect(try await js.streamInfo("EVENTS").state.messages == 10_001)
        await publisher.close()
        await connection.close()
    }

    @Test func expectationsRejectWrongValuesAndStoreNothing() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let connection = try await connect(to: server)
        let js = connection.jetStream()
        try await js.ensureStream(NATSStreamConfiguration(name: "LEDGER", subjects: ["ledger.>"]))
        let first = try await js.publish(subject: "ledger.a", payload: [1], options: .init(messageID: "m1"))
        #expect(first.sequence == 1)

        let cases: [(NATSPublishOptions, Int)] = [
            (.init(expectedStream: "OTHER"), NATSJetStreamErrorCode.streamNotMatch),
            (.init(expectedLastSequence: 5), NATSJetStreamErrorCode.wrongLastSequence),
            (.init(expectedLastSubjectSequence: 9), NATSJetStreamErrorCode.wrongLastSequence),
            (.init(expectedLastMessageID: "not-m1"), NATSJetStreamErrorCode.wrongLastMessageID),
        ]
        for (options, code) in cases {
            let error = await #expect(throws: NATSError.self) { _ = try await js.publish(subject: "ledger.a", payload: [2], options: options) }
            #expect(error?.jetStreamErrorCode == code, "\(options): \(String(describing: error))")
        }
        #expect(try await js.streamInfo("LEDGER").state.messages == 1, "nothing was stored by the rejected publishes")
        // The right values pass.
        let second = try await js.publish(
            subject: "ledger.a", payload: [3],
            options: .init(expectedStream: "LEDGER", expectedLastSequence: 1, expectedLastSubjectSequence: 1, expectedLastMessageID: "m1"))
        #expect(second.sequence == 2)

        let noStream = await #expect(throws: NATSError.self) { _ = try await js.publish(subject: "nowhere.x", payload: [1]) }
        #expect(noStream?.code == .noResponders)
        #expect(noStream?.isRetriable == true)
        await connection.close()
    }

    @Test func pendingPublishesCompleteWhenTheServerDiesAndResendingStoresEachOnce() async throws {
        let server = try await NATSServerProcess.started()
        defer { server.kill() }
        let connection = try await connect(to: server)
        let js = connection.jetStream()
        try await js.ensureStream(NATSStreamConfiguration(name: "K3", subjects: ["k3.>"]))
        let publisher = try await js.makePublisher(configuration: .init(maxPending: 4_096, ackTimeout: .seconds(2)))
        var pending: [NATSPendingPublish] = []
        for index in 0..<1_000 {
            pending.append(try await publisher.publish(subject: "k3.orders", payload: Array("\(index)".utf8)))
        }
        server.kill()
        try await Task.sleep(for: .milliseconds(300))
        try await server.restarted()

        let started = ContinuousClock.now
        var failed: [NATSPendingPublish] = []
        for publish in pending {
            if case .failure(let error) = await publish.result() {
                #expect(error.isRetriable, "\(error)")
                failed.append(publish)
            }
        }
        // Every outcome arrived within the ack timeout (plus the timer's granularity).
        #expect(ContinuousClock.now - started < .seconds(4))
        print("K3: \(pending.count - failed.count) acked, \(failed.count) failed or timed out before the resend")

        var rounds = 0
        while !failed.isEmpty && rounds < 20 {
            rounds += 1
            var again: [NATSPendingPublish] = []
            for publish in failed {
                let resent = try await publisher.resend(publish)
                if case .failure = await resent.result() { again.append(resent) }
            }
            failed = again
            if !failed.isEmpty { try await Task.sleep(for: .milliseconds(500)) }
        }
        #expect(failed.isEmpty)
        #expect(try await js.streamInfo("K3").state.messages == 1_000, "each message stored exactly once")
        await publisher.close()
        await connection.close()
    }
}
