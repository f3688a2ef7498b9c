import EventBus
import EventBusJetStream
import EventBusReliabilitySupport
import Foundation
import Logging
import NATS
import NATSTestSupport
import Synchronization
import Testing

extension ReliabilityTests {
    /// K1, K3 and the whole-cluster restart: nodes or the whole cluster go away and come back.
    @Suite("Node and cluster restarts")
    struct Restarts {
        let profile = FaultProfile.current

        /// K1: 32 clients that know only one node's URL (they learn the others from the cluster)
        /// are connected to it when it is killed. They must all reconnect, to the survivors, spread
        /// over both, and work there (each publishes to the R3 stream afterwards).
        @Test("K1: 32 clients of a killed node spread over the survivors", .timeLimit(.minutes(5)))
        func clientsSpreadOverSurvivors() async throws {
            let began = ContinuousClock.now
            var result = ReliabilityResult(test: "K1", title: "32 clients on one node; that node SIGKILLed")
            let cluster = try await offPool { try NATSClusterProcess() }
            let harness = ClusterHarness(cluster: cluster)
            let admin = try await harness.connect(name: "admin", servers: [cluster.urls[1], cluster.urls[2]])
            let probe = JetStreamProbe(connection: admin)
            let stream = "K1"
            try await harness.makeStream(stream, subjects: ["k1.>"], on: admin)

            let victim = 0
            var clients: [NATSConnection] = []
            var watchers: [ConnectionWatcher] = []
            for index in 0..<32 {
                // Only the victim's URL: the others come from the cluster's INFO (discovery).
                let client = try await harness.connect(name: "client-\(index)", servers: [cluster.urls[victim]])
                clients.append(client)
                watchers.append(ConnectionWatcher(client))
            }
            #expect(clients.allSatisfy { $0.connectedServer.flatMap(cluster.index(ofURL:)) == victim })
            // Let every client take in the INFO that lists the other nodes.
            try await Task.sleep(for: .milliseconds(500))

            let killed = FaultEvent("SIGKILL \(cluster.serverNames[victim]) holding 32 clients")
            result.faults.append(killed)
            try await offPool { cluster.kill(victim) }
            let allMoved = await eventually(timeout: .seconds(30)) {
                watchers.allSatisfy { $0.firstReconnect(after: killed.at) != nil }
            }
            #expect(allMoved, "only \(watchers.filter { $0.firstReconnect(after: killed.at) != nil }.count) of 32 clients reconnected within 30 s")
            var perNode = [0, 0, 0]
            var latest = 0.0
            for watcher in watchers {
                guard let reconnect = watcher.firstReconnect(after: killed.at), let node = cluster.index(ofURL: reconnect.server) else { continue }
                perNode[node] += 1
                latest = max(latest, reconnect.at - killed.at)
            }
            #expect(perNode[victim] == 0, "clients reconnected to the killed node: \(perNode)")
            // Random choice between two survivors: fewer than 4 of 32 on one side has odds of ~1e-6.
            #expect(perNode[1] >= 4 && perNode[2] >= 4, "clients did not spread over the survivors: \(perNode)")

            // Each client works on its new node: one publish each, retried across the election the
            // kill may have caused.
            let prefix = runID("k1")
            let history = HistoryLog<PublishRecord>()
            await withTaskGroup(of: Void.self) { group in
                for (index, client) in clients.enumerated() {
                    group.addTask {
                        history.append(
                            await PublishLoad.publish(
                                jetStream: client.jetStream(timeout: .seconds(2)), subject: "k1.hello", id: "\(prefix)-\(index)",
                                payload: Array("hello".utf8), timeout: .seconds(2), budget: .seconds(30)))
                    }
                }
            }
            let stored = try await probe.readStream(stream)
            let report = ConsistencyChecker.check(published: history.all, stored: stored)
            result.take(report)
            result.recoverySeconds = [latest]
            result.notes.append("clients per node after the kill: \(cluster.serverNames[1]) \(perNode[1]), \(cluster.serverNames[2]) \(perNode[2]); last reconnect \(String(format: "%.1f", latest)) s after the kill")
            result.seconds = (ContinuousClock.now - began).seconds
            result.record()
            #expect(report.isValid && report.acked == 32, "\(report)")
            for client in clients { await client.close() }
            await admin.close()
        }

        /// K3: a burst of asynchronous publishes is in flight when the whole cluster is SIGKILLed
        /// and restarted 2 s later. Every pending publish must end (acked, or failed/timed out
        /// within the ack timeout), none may hang, and resending the unacked with their ids must
        /// leave every id stored exactly once.
        @Test("K3: async publishes pending across a whole-cluster restart all complete; resend loses nothing", .timeLimit(.minutes(10)))
        func asyncPublishesAcrossClusterRestart() async throws {
            let began = ContinuousClock.now
            var result = ReliabilityResult(
                test: "K3", title: "\(profile.asyncBurst) async publishes; whole cluster SIGKILLed mid-burst, restarted after 2 s")
            let cluster = try await offPool { try NATSClusterProcess() }
            let harness = ClusterHarness(cluster: cluster)
            let admin = try await harness.connect(name: "admin")
            let probe = JetStreamProbe(connection: admin)
            let stream = "K3"
            try await harness.makeStream(stream, subjects: ["k3.>"], on: admin)

            let connection = try await harness.connect(name: "async-publisher")
            let ackTimeout = Duration.seconds(5)
            let publisher = try await connection.jetStream().makePublisher(configuration: .init(maxPending: 4_096, ackTimeout: ackTimeout))
            let prefix = runID("k3")
            let payload = [UInt8](repeating: UInt8(ascii: "k"), count: 128)
            let pending = HistoryLog<NATSPendingPublish>()
            let sendFailures = Atomic<Int>(0)
            let burst = profile.asyncBurst
            let publishing = Task {
                for number in 1...burst {
                    // A publish that cannot even be handed to the connection is retried here.
                    while true {
                        do {
                            pending.append(
                                try await publisher.publish(subject: "k3.orders", payload: payload, options: .init(messageID: "\(prefix)-\(number)")))
                            break
                        } catch {
                            // Cancelled when the burst overran its deadline below.
                            if Task.isCancelled { return }
                            sendFailures.add(1, ordering: .relaxed)
                            try? await Task.sleep(for: .milliseconds(100))
                        }
                    }
                }
            }
            _ = await eventually(timeout: .seconds(60)) { pending.count >= burst / 3 }
            let inFlight = publisher.pendingCount
            let killed = FaultEvent("SIGKILL all 3 nodes with \(inFlight) publishes awaiting acks (\(pending.count) of \(burst) sent)")
            result.faults.append(killed)
            try await offPool { cluster.killAll() }
            try await Task.sleep(for: .seconds(2))
            result.faults.append(FaultEvent("start all 3 nodes"))
            try await offPool { try cluster.startAll(timeout: .seconds(60)) }

            // None hangs: the burst finishes and every outcome is known within the ack timeout
            // of the last publish (plus scheduling slack).
            let finished: Void? = try? await withDeadline(.seconds(90), "the burst", onTimeout: { publishing.cancel() }) {
                await publishing.value
            }
            #expect(finished != nil, "the burst did not finish within 90 s")
            let settled: Void? = try? await withDeadline(ackTimeout + .seconds(10)) { await publisher.waitForPending() }
            #expect(settled != nil, "publishes still pending \(ackTimeout + .seconds(10)) after the burst: \(publisher.pendingCount)")
            let first = pending.all
            let unresolved = first.filter { $0.outcome == nil }
            #expect(unresolved.isEmpty, "\(unresolved.count) publishes have no outcome")
            let firstAcked = first.filter { (try? $0.outcome?.get()) != nil }.count
            let settledAt = wallClock()

            // Resend every publish without an ack, with the same id, until acked.
            var latest: [String: (record: NATSPendingPublish, attempts: Int)] = [:]
            for record in first { latest[record.messageID ?? ""] = (record, 1) }
            var failureKinds: [String: Int] = [:]
            for record in first {
                if case .failure(let error) = record.outcome { failureKinds["\(error.code)", default: 0] += 1 }
            }
            var resent = 0
            var rounds = 0
            let deadline = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now < deadline {
                let failed = latest.values.filter { (try? $0.record.outcome?.get()) == nil }
                if failed.isEmpty { break }
                if rounds > 0 { try await Task.sleep(for: .milliseconds(250)) }  // the stream may still be electing
                rounds += 1
                for entry in failed {
                    resent += 1
                    if let again = try? await publisher.resend(entry.record) {
                        latest[entry.record.messageID ?? ""] = (again, entry.attempts + 1)
                    }
                }
                await publisher.waitForPending()
            }
            let history = latest.map { id, entry -> PublishRecord in
                let outcome: PublishOutcome
                switch entry.record.outcome {
                case .success(let ack): outcome = .acked(sequence: ack.sequence, duplicate: ack.duplicate)
                case .failure(let error): outcome = .unknown(reason: "\(error.code)")
                case nil: outcome = .unknown(reason: "no outcome")
                }
                return PublishRecord(id: id, outcome: outcome, attempts: entry.attempts, startedAt: 0, completedAt: 0)
            }
            let stored = try await probe.readStream(stream, timeout: .seconds(120))
            let report = ConsistencyChecker.check(published: history, stored: stored)
            result.take(report)
            result.recoverySeconds = [settledAt - killed.at]
            result.notes.append(
                "first round: \(firstAcked) acked, \(first.count - firstAcked) not (\(failureKinds.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))), none without an outcome; \(resent) resends in \(rounds) rounds, \(report.acksMarkedDuplicate) acked as duplicate (stored although unacked)")
            if sendFailures.load(ordering: .relaxed) > 0 {
                result.notes.append("\(sendFailures.load(ordering: .relaxed)) publish calls refused while disconnected, retried")
            }
            result.notes.append("recovery = kill until every pending publish had its outcome")
            result.seconds = (ContinuousClock.now - began).seconds
            result.record()
            print("K3: \(report)")
            #expect(report.isValid, "\(report)")
            #expect(report.acked == burst && report.storedMessages == burst, "\(report)")
            await publisher.close()
            await connection.close()
            await admin.close()
        }

        /// The whole cluster is stopped (SIGTERM, all nodes at once) while a billing group of two
        /// EventBus subscribers has a backlog, and started again 2 s later. The same subscribers
        /// resume from the durable consumer: every acked event is billed, nothing is lost.
        @Test("Whole cluster stopped and started: durable consumers resume with nothing lost", .timeLimit(.minutes(10)))
        func wholeClusterStopAndStart() async throws {
            let began = ContinuousClock.now
            var result = ReliabilityResult(
                test: "C1", title: "whole cluster stopped (SIGTERM) with a billing backlog, started after 2 s; EventBus publisher and group")
            let cluster = try await offPool { try NATSClusterProcess() }
            func makeBus(_ name: String) throws -> JetStreamEventBus {
                var connection = try NATSConnectionConfiguration(servers: cluster.urls)
                connection.name = name
                connection.reconnect.wait = .milliseconds(250)
                connection.reconnect.maxAttempts = .unlimited
                var configuration = JetStreamEventBus.Configuration(connection: connection)
                configuration.streamName = "ORDERS"
                configuration.replicas = 3
                configuration.ackWait = .seconds(10)
                configuration.maxAckPending = 64
                configuration.pullBatch = 16
                var logger = Logger(label: "reliability.\(name)")
                logger.logLevel = .critical
                return JetStreamEventBus(configuration: configuration, logger: logger)
            }
            let publisherBus = try makeBus("orders")
            try await withRetries(timeout: .seconds(30)) { try await publisherBus.start() }
            let deliveries = HistoryLog<DeliveryRecord>()
            let billed = IDSet()
            var workers: [(bus: JetStreamEventBus, task: Task<Void, Never>)] = []
            for index in 1...2 {
                let worker = "billing-\(index)"
                let bus = try makeBus(worker)
                let subscription = try await bus.subscribe("order.>", options: SubscriptionOptions(group: "billing", start: .all))
                let task = Task {
                    do {
                        for try await delivery in subscription {
                            deliveries.append(
                                DeliveryRecord(
                                    id: delivery.event.id, sequence: delivery.sequence, deliveryCount: delivery.deliveryCount,
                                    receiver: worker, at: wallClock()))
                            try? await Task.sleep(for: .milliseconds(10))  // billing takes a moment
                            if (try? await delivery.ack()) != nil { billed.insert(delivery.event.id) }
                        }
                    } catch {
                        print("\(worker) ended: \(error)")
                    }
                }
                workers.append((bus, task))
            }

            let prefix = runID("c1")
            var history: [PublishRecord] = []
            func publishPhase(_ phase: Int) async {
                for number in 1...profile.eventsPerPhase {
                    let event = Event(
                        id: "\(prefix)-\(phase)-\(number)", subject: "order.created", type: "com.example.order.created", source: "/orders",
                        data: Array("{\"order\":\(number)}".utf8))
                    history.append(await EventPublishing.publish(event, on: publisherBus, budget: .seconds(60)))
                }
            }
            await publishPhase(1)
            let backlog = profile.eventsPerPhase - billed.count
            result.faults.append(FaultEvent("SIGTERM all 3 nodes (billing backlog \(backlog) of \(profile.eventsPerPhase))"))
            try await offPool { cluster.stopAll() }
            try await Task.sleep(for: .seconds(2))
            let restarted = FaultEvent("start all 3 nodes")
            result.faults.append(restarted)
            try await offPool { try cluster.startAll(timeout: .seconds(60)) }
            await publishPhase(2)

            let ackedIDs = Set(history.filter(\.outcome.isAcked).map(\.id))
            let allBilled = await eventually(timeout: .seconds(90)) { billed.contains(all: ackedIDs) }
            #expect(allBilled, "billed \(billed.all.intersection(ackedIDs).count) of \(ackedIDs.count) acked events within 90 s")
            let firstBilledAfter = deliveries.all.filter { $0.at > restarted.at }.map(\.at).min()
            let firstAckAfter = history.filter { $0.outcome.isAcked && $0.completedAt > restarted.at }.map(\.completedAt).min()
            for worker in workers {
                worker.task.cancel()
                await worker.bus.close()
            }
            let connection = try await ClusterHarness(cluster: cluster).connect(name: "audit")
            let stored = try await JetStreamProbe(connection: connection).readStream("ORDERS")
            let report = ConsistencyChecker.check(published: history, stored: stored, deliveries: deliveries.all)
            result.take(report)
            if let firstAckAfter { result.recoverySeconds.append(firstAckAfter - restarted.at) }
            result.notes.append("backlog at the stop: \(backlog); first delivery after the start: \(firstBilledAfter.map { String(format: "%.1f s", $0 - restarted.at) } ?? "none"); recovery = start until the first acked publish")
            let perWorker = Dictionary(grouping: deliveries.all, by: \.receiver).mapValues(\.count)
            result.notes.append("deliveries per worker: \(perWorker.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
            result.seconds = (ContinuousClock.now - began).seconds
            result.record()
            print("C1: \(report)")
            #expect(report.isValid, "\(report)")
            #expect(report.acked == 2 * profile.eventsPerPhase, "\(report)")
            await publisherBus.close()
            await connection.close()
        }
    }
}
