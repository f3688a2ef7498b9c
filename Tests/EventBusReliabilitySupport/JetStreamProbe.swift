import Foundation
import NATS

/// Reads and pokes a JetStream cluster for fault tests: who leads a stream, leader step-downs,
/// consumer state, and every message a stream holds. Raw JetStream API calls, so that fields the
/// `NATS` module does not model (cluster leader, replicas) are reachable.
public struct JetStreamProbe: Sendable {
    /// The connection the API calls go over.
    public let connection: NATSConnection
    /// The API prefix.
    public let apiPrefix: String

    /// Creates a probe.
    public init(connection: NATSConnection, apiPrefix: String = "$JS.API") {
        self.connection = connection
        self.apiPrefix = apiPrefix
    }

    /// A failed probe call.
    public struct Failure: Error, CustomStringConvertible {
        /// What went wrong.
        public var description: String

        /// Creates a failure.
        public init(description: String) { self.description = description }
    }

    /// A stream's place in the cluster.
    public struct StreamCluster: Sendable, Hashable {
        /// The leader's `server_name`, or `nil` while there is none.
        public var leader: String?
        /// The other replicas: name and whether each is current.
        public var replicas: [Replica]
        /// Messages stored.
        public var messages: UInt64
        /// The last sequence.
        public var lastSequence: UInt64

        /// One follower.
        public struct Replica: Sendable, Hashable {
            /// Its `server_name`.
            public var name: String
            /// Whether it has caught up.
            public var current: Bool
        }
    }

    /// A consumer's counters.
    public struct ConsumerState: Sendable, Hashable {
        /// The consumer name.
        public var name: String
        /// Its leader's `server_name`.
        public var leader: String?
        /// Messages not yet delivered.
        public var pending: UInt64
        /// Delivered, not yet acknowledged.
        public var ackPending: Int
        /// Messages redelivered at least once.
        public var redelivered: Int
        /// Every stream sequence up to this one is acknowledged.
        public var ackFloorStreamSequence: UInt64
        /// The last stream sequence delivered.
        public var deliveredStreamSequence: UInt64
    }

    private func call(_ operation: String, body: String = "", timeout: Duration) async throws -> [String: Any] {
        let reply = try await connection.request(subject: "\(apiPrefix).\(operation)", payload: Array(body.utf8), timeout: timeout)
        guard let object = try JSONSerialization.jsonObject(with: Data(reply.payload.bytes)) as? [String: Any] else {
            throw Failure(description: "\(operation): not a JSON object: \(reply.payload.string.prefix(200))")
        }
        if let error = object["error"] as? [String: Any] {
            throw Failure(description: "\(operation): \(error["description"] ?? error)")
        }
        return object
    }

    /// The stream's leader, replicas and counters (`$JS.API.STREAM.INFO`, answered by the leader).
    public func streamCluster(_ stream: String, timeout: Duration = .seconds(2)) async throws -> StreamCluster {
        let info = try await call("STREAM.INFO.\(stream)", timeout: timeout)
        let cluster = info["cluster"] as? [String: Any] ?? [:]
        let state = info["state"] as? [String: Any] ?? [:]
        let replicas = (cluster["replicas"] as? [[String: Any]] ?? []).map {
            StreamCluster.Replica(name: $0["name"] as? String ?? "?", current: $0["current"] as? Bool ?? false)
        }
        return StreamCluster(
            leader: (cluster["leader"] as? String).flatMap { $0.isEmpty ? nil : $0 }, replicas: replicas,
            messages: (state["messages"] as? NSNumber)?.uint64Value ?? 0,
            lastSequence: (state["last_seq"] as? NSNumber)?.uint64Value ?? 0)
    }

    /// The stream's leader, retrying until one answers or `timeout` passes.
    public func waitForStreamLeader(_ stream: String, timeout: Duration = .seconds(30)) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        var last: (any Error)?
        while ContinuousClock.now < deadline {
            do {
                if let leader = try await streamCluster(stream, timeout: .seconds(1)).leader { return leader }
            } catch {
                last = error
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw Failure(description: "no leader for stream \(stream) within \(timeout) (last error: \(last.map { "\($0)" } ?? "none"))")
    }

    /// Asks the stream's leader to step down (`$JS.API.STREAM.LEADER.STEPDOWN`).
    public func stepDownStream(_ stream: String, timeout: Duration = .seconds(5)) async throws {
        let answer = try await call("STREAM.LEADER.STEPDOWN.\(stream)", timeout: timeout)
        guard answer["success"] as? Bool == true else { throw Failure(description: "stream step-down not confirmed: \(answer)") }
    }

    /// Asks a consumer's leader to step down (`$JS.API.CONSUMER.LEADER.STEPDOWN`).
    public func stepDownConsumer(stream: String, consumer: String, timeout: Duration = .seconds(5)) async throws {
        let answer = try await call("CONSUMER.LEADER.STEPDOWN.\(stream).\(consumer)", timeout: timeout)
        guard answer["success"] as? Bool == true else { throw Failure(description: "consumer step-down not confirmed: \(answer)") }
    }

    /// Every consumer of the stream with its counters (`$JS.API.CONSUMER.LIST`).
    public func consumers(stream: String, timeout: Duration = .seconds(2)) async throws -> [ConsumerState] {
        let answer = try await call("CONSUMER.LIST.\(stream)", body: "{\"offset\":0}", timeout: timeout)
        return (answer["consumers"] as? [[String: Any]] ?? []).map(JetStreamProbe.consumerState(from:))
    }

    /// One consumer's counters (`$JS.API.CONSUMER.INFO`).
    public func consumer(stream: String, name: String, timeout: Duration = .seconds(2)) async throws -> ConsumerState {
        JetStreamProbe.consumerState(from: try await call("CONSUMER.INFO.\(stream).\(name)", timeout: timeout))
    }

    private static func consumerState(from info: [String: Any]) -> ConsumerState {
        let ackFloor = info["ack_floor"] as? [String: Any] ?? [:]
        let delivered = info["delivered"] as? [String: Any] ?? [:]
        return ConsumerState(
            name: info["name"] as? String ?? "?",
            leader: (info["cluster"] as? [String: Any])?["leader"] as? String,
            pending: (info["num_pending"] as? NSNumber)?.uint64Value ?? 0,
            ackPending: (info["num_ack_pending"] as? NSNumber)?.intValue ?? 0,
            redelivered: (info["num_redelivered"] as? NSNumber)?.intValue ?? 0,
            ackFloorStreamSequence: (ackFloor["stream_seq"] as? NSNumber)?.uint64Value ?? 0,
            deliveredStreamSequence: (delivered["stream_seq"] as? NSNumber)?.uint64Value ?? 0)
    }

    /// Every message the stream holds (or those on `filterSubject`), as (`Nats-Msg-Id`,
    /// sequence), read with an ephemeral pull consumer (no acks) in bounded fetches; throws if it
    /// cannot read them all within `timeout`.
    public func readStream(_ stream: String, filterSubject: String? = nil, timeout: Duration = .seconds(60)) async throws -> [StoredMessage] {
        let deadline = ContinuousClock.now + timeout
        let jetStream = connection.jetStream()
        var configuration = NATSConsumerConfiguration()
        configuration.ackPolicy = .none
        configuration.deliverPolicy = .all
        configuration.inactiveThreshold = .seconds(30)
        configuration.replicas = 1
        configuration.memoryStorage = true
        if let filterSubject { configuration.filterSubjects = [filterSubject] }
        // Right after a fault the meta leader may be moving: API calls can go unanswered.
        let info = try await retrying(until: deadline) { try await jetStream.ensureConsumer(stream: stream, configuration) }
        do {
            let messages = try await read(jetStream: jetStream, stream: stream, consumer: info.name, deadline: deadline, timeout: timeout)
            try? await jetStream.deleteConsumer(stream: stream, name: info.name)
            return messages
        } catch {
            try? await jetStream.deleteConsumer(stream: stream, name: info.name)
            throw error
        }
    }

    private func read(
        jetStream: NATSJetStream, stream: String, consumer name: String, deadline: ContinuousClock.Instant, timeout: Duration
    ) async throws -> [StoredMessage] {
        let consumer = try await jetStream.pullConsumer(stream: stream, name: name, options: .init(batch: 1_000))
        defer { consumer.stop() }
        var messages: [StoredMessage] = []
        while true {
            if ContinuousClock.now >= deadline {
                throw Failure(description: "read only \(messages.count) messages of stream \(stream) within \(timeout)")
            }
            let batch = try await consumer.fetch(batch: 1_000, maxWait: .seconds(1))
            for message in batch {
                guard let sequence = message.metadata?.streamSequence else { continue }
                messages.append(StoredMessage(id: message.headers[NATSPublishOptions.Header.messageID] ?? "", sequence: sequence))
            }
            // Done once a fetch came back short and the server has nothing left for this consumer.
            if batch.count < 1_000,
                try await retrying(until: deadline, { try await self.consumer(stream: stream, name: name, timeout: .seconds(5)) }).pending == 0
            {
                return messages
            }
        }
    }

    /// Runs `body` until it succeeds or `deadline` passes (then rethrows its last error).
    private func retrying<T>(until deadline: ContinuousClock.Instant, _ body: () async throws -> T) async throws -> T {
        while true {
            do {
                return try await body()
            } catch {
                if ContinuousClock.now >= deadline { throw error }
                try await Task.sleep(for: .milliseconds(250))
            }
        }
    }
}
