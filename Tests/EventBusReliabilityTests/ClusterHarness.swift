import EventBusReliabilitySupport
import Foundation
import Logging
import NATS
import NATSTestSupport
import Synchronization
import Testing

/// Connections, streams, load and consumers on a ``NATSClusterProcess`` for the fault tests.
struct ClusterHarness: Sendable {
    let cluster: NATSClusterProcess

    /// A client of the whole cluster: every node's URL, quick reconnects that never give up, and
    /// the project's default ping interval unless told otherwise.
    func connect(
        name: String,
        servers: [String]? = nil,
        _ adjust: (inout NATSConnectionConfiguration) -> Void = { _ in }
    ) async throws -> NATSConnection {
        try await connectWithDefaults(name: name, servers: servers) { configuration in
            configuration.reconnect.wait = .milliseconds(250)
            configuration.reconnect.jitter = .milliseconds(100)
            configuration.reconnect.maxAttempts = .unlimited
            adjust(&configuration)
        }
    }

    /// Connects with the library's default configuration (no test tuning of reconnects or pings).
    func connectWithDefaults(
        name: String,
        servers: [String]? = nil,
        _ adjust: (inout NATSConnectionConfiguration) -> Void = { _ in }
    ) async throws -> NATSConnection {
        var configuration = try NATSConnectionConfiguration(servers: servers ?? cluster.urls)
        configuration.name = name
        adjust(&configuration)
        var logger = Logger(label: "reliability.\(name)")
        logger.logLevel = .critical
        return try await NATSConnection.connect(configuration: configuration, logger: logger)
    }

    /// Creates an R3 file stream (or `replicas`) and waits until it has a leader.
    @discardableResult
    func makeStream(
        _ name: String, subjects: [String], replicas: Int = 3, on connection: NATSConnection
    ) async throws -> String {
        var stream = NATSStreamConfiguration(name: name, subjects: subjects)
        stream.replicas = replicas
        stream.storage = .file
        stream.duplicateWindow = .seconds(120)
        let jetStream = connection.jetStream(timeout: .seconds(10))
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            do {
                try await jetStream.ensureStream(stream)
                break
            } catch {
                // Right after start the meta leader may still be settling.
                if ContinuousClock.now >= deadline { throw error }
                try await Task.sleep(for: .milliseconds(250))
            }
        }
        return try await JetStreamProbe(connection: connection).waitForStreamLeader(name)
    }

    /// The index of the node that leads `stream` now (asked of the stream leader itself).
    func leaderIndex(of stream: String, probe: JetStreamProbe, timeout: Duration = .seconds(30)) async throws -> Int {
        let name = try await probe.waitForStreamLeader(stream, timeout: timeout)
        guard let index = cluster.index(ofServerName: name) else {
            throw JetStreamProbe.Failure(description: "leader \(name) is not a node of this cluster")
        }
        return index
    }
}

/// Several tasks publishing to JetStream one publish at a time, each retrying its publish with
/// the same `Nats-Msg-Id` until acked or out of budget, recording every outcome.
final class PublishLoad: Sendable {
    let history = HistoryLog<PublishRecord>()
    private let stopped = Atomic<Bool>(false)
    private let tasks = Mutex<[Task<Void, Never>]>([])
    private let subject: String
    let idPrefix: String
    private let ratePerPublisher: Int
    private let attemptTimeout: Duration
    private let retryBudget: Duration

    /// - Parameters:
    ///   - subject: Where to publish.
    ///   - idPrefix: Ids are `<idPrefix>-<publisher>-<n>`.
    ///   - ratePerPublisher: Publishes per second per task, 0 for as fast as acks come.
    ///   - attemptTimeout: How long one attempt waits for the ack.
    ///   - retryBudget: How long one publish keeps retrying before it counts as failed/unknown.
    init(subject: String, idPrefix: String, ratePerPublisher: Int, attemptTimeout: Duration, retryBudget: Duration) {
        self.subject = subject
        self.idPrefix = idPrefix
        self.ratePerPublisher = ratePerPublisher
        self.attemptTimeout = attemptTimeout
        self.retryBudget = retryBudget
    }

    /// Starts one publishing task per connection.
    func start(on connections: [NATSConnection]) {
        for (index, connection) in connections.enumerated() {
            let task = Task { await self.publishLoop(publisher: index, connection: connection) }
            tasks.withLock { $0.append(task) }
        }
    }

    /// Stops publishing and waits for each task to finish its current publish (bounded by the
    /// retry budget).
    func stop() async {
        stopped.store(true, ordering: .releasing)
        for task in tasks.withLock({ $0 }) { await task.value }
    }

    /// Acks recorded so far.
    var ackedCount: Int { history.all.filter(\.outcome.isAcked).count }

    /// When each acked publish completed.
    var timeline: AvailabilityTimeline {
        AvailabilityTimeline(ackTimes: history.all.filter(\.outcome.isAcked).map(\.completedAt))
    }

    private func publishLoop(publisher: Int, connection: NATSConnection) async {
        let jetStream = connection.jetStream(timeout: attemptTimeout)
        let payload = [UInt8](repeating: UInt8(ascii: "x"), count: 128)
        let start = ContinuousClock.now
        var number = 0
        while !stopped.load(ordering: .acquiring) {
            number += 1
            if ratePerPublisher > 0 {
                let due = start + .milliseconds(Int64(number - 1) * 1_000 / Int64(ratePerPublisher))
                if due > .now { try? await Task.sleep(until: due, clock: .continuous) }
            }
            let record = await PublishLoad.publish(
                jetStream: jetStream, subject: subject, id: "\(idPrefix)-\(publisher)-\(number)", payload: payload,
                timeout: attemptTimeout, budget: retryBudget)
            history.append(record)
        }
    }

    /// One logical publish: attempts with the same id until acked, a definite refusal, or the
    /// budget is spent. Timeouts and dropped connections make the outcome unknown unless a later
    /// attempt is acked; only "no responders" on every attempt means certainly not stored.
    static func publish(
        jetStream: NATSJetStream, subject: String, id: String, payload: [UInt8], timeout: Duration, budget: Duration
    ) async -> PublishRecord {
        let startedAt = wallClock()
        let deadline = ContinuousClock.now + budget
        var attempts = 0
        var ambiguous = false
        while true {
            attempts += 1
            do {
                let ack = try await jetStream.publish(subject: subject, payload: payload, options: .init(messageID: id), timeout: timeout)
                return PublishRecord(
                    id: id, outcome: .acked(sequence: ack.sequence, duplicate: ack.duplicate), attempts: attempts,
                    startedAt: startedAt, completedAt: wallClock())
            } catch {
                if error.code != .noResponders { ambiguous = true }
                let invalid = [.invalidSubject, .invalidArgument, .payloadTooLarge, .invalidHeader].contains(error.code)
                if invalid || ContinuousClock.now >= deadline {
                    let reason = "\(error.code): \(error.message)"
                    return PublishRecord(
                        id: id, outcome: ambiguous ? .unknown(reason: reason) : .failed(reason: reason), attempts: attempts,
                        startedAt: startedAt, completedAt: wallClock())
                }
                // A leader election takes seconds: retry soon, but do not spin.
                try? await Task.sleep(for: .milliseconds(min(50 * attempts, 500)))
            }
        }
    }
}

/// A durable pull consumer that records every delivery and acknowledges it (plain ack, or
/// ackSync recording which acks the server confirmed).
final class ConsumerRecorder: Sendable {
    let deliveries = HistoryLog<DeliveryRecord>()
    private let received = Mutex<Set<String>>([])
    /// Deliveries of a sequence whose ack the server had already confirmed (R7's violation).
    let deliveredAfterConfirmedAck = HistoryLog<DeliveryRecord>()
    /// ackSync calls the server did not confirm in time.
    let unconfirmedAcks = HistoryLog<DeliveryRecord>()
    private let confirmed = Mutex<[UInt64: Double]>([:])
    private let task = Mutex<Task<Void, Never>?>(nil)
    private let stopped = Atomic<Bool>(false)
    let name: String

    init(name: String) {
        self.name = name
    }

    /// Sequences whose ackSync the server confirmed.
    var confirmedSequences: Set<UInt64> { Set(confirmed.withLock { $0.keys }) }

    /// When each confirmation arrived.
    var confirmationTimes: [Double] { confirmed.withLock { Array($0.values) } }

    /// Distinct ids received.
    var receivedIDs: Set<String> { received.withLock { $0 } }

    /// Starts fetching `batch` at a time from `consumer` on `stream`, acknowledging each message
    /// (with ackSync when `confirmAcks`), pausing `pause` after each.
    func start(
        connection: NATSConnection, stream: String, consumer: String, batch: Int, confirmAcks: Bool, pause: Duration = .zero
    ) {
        let handle = Task {
            let jetStream = connection.jetStream(timeout: .seconds(5))
            var pull: NATSPullConsumer?
            while !stopped.load(ordering: .acquiring) {
                do {
                    if pull == nil {
                        pull = try await jetStream.pullConsumer(stream: stream, name: consumer, options: .init(batch: batch))
                    }
                    for message in try await pull!.fetch(batch: batch, maxWait: .seconds(1)) {
                        guard let metadata = message.metadata else { continue }
                        let record = DeliveryRecord(
                            id: message.headers[NATSPublishOptions.Header.messageID] ?? "", sequence: metadata.streamSequence,
                            deliveryCount: Int(metadata.deliveryCount), receiver: name, at: wallClock())
                        deliveries.append(record)
                        _ = received.withLock { $0.insert(record.id) }
                        if confirmed.withLock({ $0[metadata.streamSequence] != nil }) { deliveredAfterConfirmedAck.append(record) }
                        if confirmAcks {
                            do {
                                try await message.ackSync(timeout: .seconds(2))
                                let now = wallClock()
                                confirmed.withLock { $0[metadata.streamSequence] = now }
                            } catch {
                                // Not confirmed: the server may redeliver it, which is allowed.
                                unconfirmedAcks.append(record)
                            }
                        } else {
                            try? message.ack()
                        }
                        if pause > .zero { try? await Task.sleep(for: pause) }
                    }
                } catch {
                    // Reconnecting, or the consumer's leader is moving: try again shortly.
                    if stopped.load(ordering: .acquiring) { break }
                    try? await Task.sleep(for: .milliseconds(200))
                }
            }
            pull?.stop()
        }
        task.withLock { $0 = handle }
    }

    /// Stops fetching and waits for the loop to end.
    func stop() async {
        stopped.store(true, ordering: .releasing)
        if let handle = task.withLock({ $0 }) { await handle.value }
    }

    /// Waits until every id in `ids` was received, or `timeout` passes.
    func waitUntilReceived(_ ids: Set<String>, timeout: Duration) async -> Bool {
        await eventually(timeout: timeout) { received.withLock { ids.isSubset(of: $0) } }
    }
}

/// Creates a durable pull consumer with explicit acks.
func makeDurableConsumer(
    _ name: String, stream: String, ackWait: Duration, on connection: NATSConnection
) async throws {
    var configuration = NATSConsumerConfiguration(durableName: name)
    configuration.ackPolicy = .explicit
    configuration.ackWait = ackWait
    configuration.deliverPolicy = .all
    configuration.maxAckPending = 10_000
    let jetStream = connection.jetStream(timeout: .seconds(10))
    let deadline = ContinuousClock.now + .seconds(30)
    while true {
        do {
            try await jetStream.ensureConsumer(stream: stream, configuration)
            return
        } catch {
            if ContinuousClock.now >= deadline { throw error }
            try await Task.sleep(for: .milliseconds(250))
        }
    }
}

/// A short unique prefix for ids of one test run.
func runID(_ test: String) -> String { "\(test)-\(UUID().uuidString.prefix(6))" }

/// Runs a blocking fixture call (process start/stop, health polling) on a dispatch thread, so it
/// does not hold one of the few threads of Swift's cooperative pool.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}

/// Records a connection's events with their wall-clock times.
final class ConnectionWatcher: Sendable {
    let connection: NATSConnection
    let events = HistoryLog<(event: NATSConnectionEvent, at: Double)>()
    private let task: Task<Void, Never>

    init(_ connection: NATSConnection) {
        self.connection = connection
        let events = self.events
        let stream = connection.events
        task = Task {
            for await event in stream { events.append((event, wallClock())) }
        }
    }

    deinit { task.cancel() }

    /// The first reconnection after `time`, with the server it reconnected to.
    func firstReconnect(after time: Double) -> (server: String, at: Double)? {
        for (event, at) in events.all where at >= time {
            if case .reconnected(let server) = event { return (server, at) }
        }
        return nil
    }
}

/// A thread-safe set of ids.
final class IDSet: Sendable {
    private let storage = Mutex<Set<String>>([])

    func insert(_ id: String) { _ = storage.withLock { $0.insert(id) } }
    var all: Set<String> { storage.withLock { $0 } }
    var count: Int { storage.withLock { $0.count } }
    func contains(all ids: Set<String>) -> Bool { storage.withLock { ids.isSubset(of: $0) } }
}
