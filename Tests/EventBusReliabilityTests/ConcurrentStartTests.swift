import EventBus
import EventBusJetStream
import EventBusReliabilitySupport
import Foundation
import Logging
import NATS
import NATSTestSupport
import Testing

extension ReliabilityTests {
    /// Services start while the cluster is still settling: each creates-or-updates the bus's
    /// stream at start, while others do the same or while the stream's leader is being elected.
    @Suite("Services starting during elections")
    struct ServiceStart {
        /// Six buses start at the same moment against a fresh cluster whose R3 stream does not
        /// exist yet. While one creates it, the stream has no leader for a moment and the
        /// others' `STREAM.INFO` goes unanswered; each must still start.
        @Test("S1: six services starting at once against a fresh cluster all start", .timeLimit(.minutes(5)))
        func servicesStartTogether() async throws {
            let cluster = try await offPool { try NATSClusterProcess() }
            let outcomes = try await withThrowingTaskGroup(of: (String, (any Error)?).self) { group in
                for index in 1...6 {
                    group.addTask {
                        var connection = try NATSConnectionConfiguration(servers: cluster.urls)
                        connection.name = "service-\(index)"
                        var configuration = JetStreamEventBus.Configuration(connection: connection)
                        configuration.streamName = "ORDERS"
                        configuration.replicas = 3
                        var logger = Logger(label: "service-\(index)")
                        logger.logLevel = .critical
                        let bus = JetStreamEventBus(configuration: configuration, logger: logger)
                        do {
                            try await bus.start()
                            await bus.close()
                            return ("service-\(index)", nil)
                        } catch {
                            await bus.close()
                            return ("service-\(index)", error)
                        }
                    }
                }
                var outcomes: [(String, (any Error)?)] = []
                for try await outcome in group { outcomes.append(outcome) }
                return outcomes
            }
            let failed = outcomes.filter { $0.1 != nil }
            #expect(failed.isEmpty, "\(failed.count) of 6 services could not start: \(failed.map { "\($0.0): \($0.1!)" }.joined(separator: "\n"))")
        }

        /// A service (re)starts right when its stream has no leader: two of the three nodes are
        /// down and come back 3 s later. Its start must wait for the election (a few seconds), not
        /// fail on the first unanswered `STREAM.INFO`. Found by the multi-host test, where services
        /// starting together against a new cluster sometimes could not start at all.
        @Test("S2: a service starting while its stream has no leader starts once one is elected", .timeLimit(.minutes(5)))
        func serviceStartsThroughAnElection() async throws {
            let cluster = try await offPool { try NATSClusterProcess() }
            func makeBus(_ name: String, servers: [String]) throws -> JetStreamEventBus {
                var connection = try NATSConnectionConfiguration(servers: servers)
                connection.name = name
                connection.reconnect.wait = .milliseconds(250)
                connection.reconnect.maxAttempts = .unlimited
                var configuration = JetStreamEventBus.Configuration(connection: connection)
                configuration.streamName = "ORDERS"
                configuration.replicas = 3
                configuration.publishTimeout = .seconds(3)  // also the JetStream API timeout
                var logger = Logger(label: name)
                logger.logLevel = .critical
                return JetStreamEventBus(configuration: configuration, logger: logger)
            }
            let first = try makeBus("first", servers: cluster.urls)
            try await first.start()
            await first.close()

            // Keep a follower; stop the leader and the other follower (the stream loses its quorum).
            let admin = try await ClusterHarness(cluster: cluster).connect(name: "admin")
            let leader = try await ClusterHarness(cluster: cluster).leaderIndex(of: "ORDERS", probe: JetStreamProbe(connection: admin))
            await admin.close()
            let survivor = (leader + 1) % 3
            let stopped = [0, 1, 2].filter { $0 != survivor }
            try await offPool { for node in stopped { cluster.kill(node) } }
            let restarter = Task {
                try await Task.sleep(for: .seconds(3))
                try await offPool { for node in stopped { try cluster.start(node) } }
            }
            let began = ContinuousClock.now
            let second = try makeBus("second", servers: [cluster.urls[survivor]])
            var failure: (any Error)?
            do {
                try await second.start()
            } catch {
                failure = error
            }
            let took = ContinuousClock.now - began
            try await restarter.value
            await second.close()
            #expect(failure == nil, "the service could not start after \(took): \(failure.map { "\($0)" } ?? "")")
            print("S2: start returned after \(took)")
        }
    }
}
