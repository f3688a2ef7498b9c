import EventBusReliabilitySupport
import Foundation
import NATS
import NATSTestSupport
import Testing

extension ReliabilityTests {
    /// R6 and R7: leadership moves (step-downs, a rolling restart) while publishers retry and
    /// consumers acknowledge.
    @Suite("Leader step-downs")
    struct StepDowns {
        let profile = FaultProfile.current

        /// R6: the stream leader steps down repeatedly while publishers, whose attempts time out
        /// after 250 ms, retry with the same message id. After each step-down, ids the previous
        /// leader acked are published again (a client whose ack was lost does exactly that): the
        /// new leader must answer "duplicate" with the original sequence. Every id ends up stored
        /// exactly once.
        @Test("R6: step-downs while publishers retry with the same id store every id once", .timeLimit(.minutes(10)))
        func stepDownsWithRetries() async throws {
            let began = ContinuousClock.now
            var result = ReliabilityResult(
                test: "R6", title: "\(profile.stepDowns) stream leader step-downs; publishers retry 250 ms timeouts with the same id")
            let cluster = try await offPool { try NATSClusterProcess() }
            let harness = ClusterHarness(cluster: cluster)
            let admin = try await harness.connect(name: "admin")
            let probe = JetStreamProbe(connection: admin)
            let stream = "R6"
            try await harness.makeStream(stream, subjects: ["r6.>"], on: admin)
            var connections: [NATSConnection] = []
            for index in 0..<profile.publishers { connections.append(try await harness.connect(name: "publisher-\(index)")) }
            let load = PublishLoad(
                subject: "r6.orders", idPrefix: runID("r6"), ratePerPublisher: profile.ratePerPublisher,
                attemptTimeout: .milliseconds(250), retryBudget: .seconds(30))
            load.start(on: connections)
            try await Task.sleep(for: profile.steadyPeriod)

            let retrier = admin.jetStream(timeout: .seconds(2))
            var republished = 0
            var recognised = 0
            var wrongSequence: [String] = []
            for _ in 1...profile.stepDowns {
                let before = try await probe.waitForStreamLeader(stream)
                let ackedByOldLeader = load.history.all.suffix(200).filter(\.outcome.isAcked).suffix(25)
                result.faults.append(FaultEvent("step-down of \(before)"))
                try await withRetries(timeout: .seconds(10)) { try await probe.stepDownStream(stream) }
                let after = try await probe.waitForStreamLeader(stream)
                #expect(after != before, "the leader did not change on step-down (\(before))")
                for record in ackedByOldLeader {
                    guard case .acked(let sequence, _) = record.outcome else { continue }
                    let again = await PublishLoad.publish(
                        jetStream: retrier, subject: "r6.orders", id: record.id, payload: Array("again".utf8),
                        timeout: .seconds(2), budget: .seconds(20))
                    republished += 1
                    if case .acked(let newSequence, let duplicate) = again.outcome {
                        if duplicate { recognised += 1 }
                        if newSequence != sequence { wrongSequence.append("\(record.id): \(sequence) then \(newSequence)") }
                    }
                }
                try await Task.sleep(for: profile.steadyPeriod / 2)
            }
            await load.stop()

            #expect(republished > 0)
            #expect(recognised == republished, "only \(recognised) of \(republished) re-published ids were recognised as duplicates")
            #expect(wrongSequence.isEmpty, "a duplicate ack named another sequence: \(wrongSequence.prefix(5))")
            let timeline = load.timeline
            result.recoverySeconds = timeline.unavailability(after: result.faults)
            result.notes.append("\(republished) ids acked by a previous leader re-published after its step-down: \(recognised) answered duplicate")
            let report = try await checkAndRecord(&result, load: load, probe: probe, stream: stream, consumer: nil, began: began)
            result.notes.append("\(report.retried) publishes retried, \(report.acksMarkedDuplicate) of them acked as duplicate")
            #expect(report.duplicated.isEmpty, "stored more than once: \(report.duplicated.prefix(5))")
            #expect(report.unknown == 0 && report.failed == 0, "every publish should end acked within its retry budget")
            #expect(report.storedMessages == report.published)
            for connection in connections { await connection.close() }
            await admin.close()
        }

        /// R7: a durable consumer acknowledges every event with ackSync (the server confirms it
        /// recorded the ack) while the stream and consumer leaders step down and every node is
        /// restarted in turn. No event whose ack was confirmed may be delivered again.
        @Test("R7: acks confirmed by ackSync are never redelivered across step-downs and a rolling restart", .timeLimit(.minutes(15)))
        func confirmedAcksAreFinal() async throws {
            let began = ContinuousClock.now
            var result = ReliabilityResult(
                test: "R7",
                title: "\(profile.ackSyncEvents) events consumed with ackSync; \(profile.ackSyncRounds)x (stream and consumer step-downs, rolling restart)")
            let cluster = try await offPool { try NATSClusterProcess() }
            let harness = ClusterHarness(cluster: cluster)
            let admin = try await harness.connect(name: "admin")
            let probe = JetStreamProbe(connection: admin)
            let stream = "R7"
            try await harness.makeStream(stream, subjects: ["r7.>"], on: admin)

            // The events, published up front (each acked; resent with its id until it is).
            let publisher = try await harness.connect(name: "publisher")
            let jetStream = publisher.jetStream(timeout: .seconds(5))
            let prefix = runID("r7")
            let history = HistoryLog<PublishRecord>()
            let payload = [UInt8](repeating: UInt8(ascii: "r"), count: 128)
            try await withThrowingTaskGroup(of: Void.self) { group in
                let lanes = 8
                for lane in 0..<lanes {
                    group.addTask {
                        for number in stride(from: lane + 1, through: profile.ackSyncEvents, by: lanes) {
                            history.append(
                                await PublishLoad.publish(
                                    jetStream: jetStream, subject: "r7.orders", id: "\(prefix)-\(number)", payload: payload,
                                    timeout: .seconds(5), budget: .seconds(30)))
                        }
                    }
                }
                try await group.waitForAll()
            }
            let notAcked = history.all.filter { !$0.outcome.isAcked }
            #expect(notAcked.isEmpty, "not every event was stored before consuming: \(notAcked.prefix(3))")

            let ackWait = Duration.seconds(10)
            try await makeDurableConsumer("billing", stream: stream, ackWait: ackWait, on: admin)
            let consumerConnection = try await harness.connect(name: "consumer")
            let consumer = ConsumerRecorder(name: "billing")
            // One message at a time: nothing waits in a client buffer long enough for its ack wait
            // to expire, so a redelivery after a confirmed ack can only be the server's doing.
            consumer.start(
                connection: consumerConnection, stream: stream, consumer: "billing", batch: 1, confirmAcks: true,
                pause: .milliseconds(5))

            let total = profile.ackSyncEvents
            for round in 1...profile.ackSyncRounds {
                // Spread the rounds over the consumption, leaving enough after the last round that the
                // rolling restart happens while events are still being consumed.
                let milestone = total * round / (profile.ackSyncRounds + 2)
                _ = await eventually(timeout: .seconds(60)) { consumer.confirmedSequences.count >= milestone }
                let streamLeader = try await probe.waitForStreamLeader(stream)
                result.faults.append(FaultEvent("step-down of stream leader \(streamLeader) (\(consumer.confirmedSequences.count) of \(total) acks confirmed)"))
                try await withRetries(timeout: .seconds(10)) { try await probe.stepDownStream(stream) }
                try await Task.sleep(for: .seconds(1))
                for _ in 1...2 {
                    let consumerLeader = (try? await probe.consumer(stream: stream, name: "billing"))?.leader ?? "?"
                    result.faults.append(FaultEvent("step-down of consumer leader \(consumerLeader)"))
                    try await withRetries(timeout: .seconds(10)) { try await probe.stepDownConsumer(stream: stream, consumer: "billing") }
                    try await Task.sleep(for: .seconds(1))
                }
                for node in cluster.nodes.indices {
                    result.faults.append(
                        FaultEvent("rolling restart: SIGTERM and start \(cluster.serverNames[node]) (\(consumer.confirmedSequences.count) of \(total) acks confirmed)"))
                    try await offPool {
                        cluster.stop(node)
                        try cluster.start(node)
                        try cluster.waitUntilHealthy(timeout: .seconds(60))
                    }
                }
            }
            // Done when every event was acked (confirmed, or an ackSync whose confirmation was lost
            // but which the server applied) and the server's ack floor covers the whole stream.
            let everything = Set(1...UInt64(total))
            let allAcked = await eventually(timeout: .seconds(120)) {
                let attempted = consumer.confirmedSequences.union(consumer.unconfirmedAcks.all.map(\.sequence))
                guard attempted.isSuperset(of: everything) else { return false }
                let state = try? await probe.consumer(stream: stream, name: "billing")
                return state?.ackFloorStreamSequence == UInt64(total) && state?.ackPending == 0
            }
            #expect(allAcked, "only \(consumer.confirmedSequences.count) of \(total) acks were confirmed within 120 s")
            // Keep consuming past the ack wait: a confirmed ack the server forgot would show now.
            try await Task.sleep(for: ackWait + .seconds(3))
            await consumer.stop()

            let consumption = AvailabilityTimeline(ackTimes: consumer.confirmationTimes)
            result.recoverySeconds = consumption.unavailability(after: result.faults)
            let violations = consumer.deliveredAfterConfirmedAck.all
            #expect(violations.isEmpty, "delivered again after a confirmed ack: \(violations.prefix(5))")
            let stored = try await probe.readStream(stream, timeout: .seconds(60))
            let report = ConsistencyChecker.check(published: history.all, stored: stored, deliveries: consumer.deliveries.all)
            result.take(report)
            let state = try await withRetries(timeout: .seconds(30)) { try await probe.consumer(stream: stream, name: "billing") }
            result.notes.append("\(violations.count) deliveries after a confirmed ack")
            result.notes.append("recovery here = longest pause in confirmed acks after each fault")
            result.notes.append("\(consumer.unconfirmedAcks.count) ackSync calls not confirmed (those events may come again)")
            result.notes.append("\(consumer.confirmedSequences.count) acks confirmed; consumer ack floor \(state.ackFloorStreamSequence), ack pending \(state.ackPending)")
            result.seconds = (ContinuousClock.now - began).seconds
            result.record()
            print("R7: \(report)")
            #expect(report.isValid, "\(report)")
            #expect(state.ackFloorStreamSequence == UInt64(total) && state.ackPending == 0, "the consumer's ack floor is \(state.ackFloorStreamSequence) of \(total)")
            await consumerConnection.close()
            await publisher.close()
            await admin.close()
        }
    }
}

/// Runs `body` until it succeeds or `timeout` passes (then rethrows its last error).
@discardableResult
func withRetries<T>(timeout: Duration, _ body: () async throws -> T) async throws -> T {
    let deadline = ContinuousClock.now + timeout
    while true {
        do {
            return try await body()
        } catch {
            if ContinuousClock.now >= deadline { throw error }
            try await Task.sleep(for: .milliseconds(250))
        }
    }
}
