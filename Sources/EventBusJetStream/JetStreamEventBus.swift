public import EventBus
public import Logging
import NATS
public import ServiceLifecycle
import Synchronization

/// An ``EventBus`` on NATS JetStream: events are stored in a stream, groups are durable
/// consumers that share the work, and every host that uses the same stream and group sees the
/// same events.
///
/// - `publish` sends the event with `Nats-Msg-Id` = event id and returns when the stream stored
///   it (the receipt carries the stream sequence and whether it was a duplicate). A publish that
///   is alone goes out at once on a second, SendAsap connection (cnats's flusher would hold it up
///   to a millisecond); while other publishes are in flight it joins them in the bounded window
///   of asynchronous publishes on the main connection, which cnats batches into few writes.
///   Requests and replies also use the SendAsap connection.
/// - `subscribe` with a group binds to the durable pull consumer of that group and pattern (created
///   on first use, named `<group>-<hash of the pattern>`); without a group it creates an ephemeral
///   consumer. Both start where ``SubscriptionOptions/start`` says (an existing group resumes).
/// - `request` sends a core NATS request (not stored) to the subscribers of the subject; a
///   subscriber answers with `delivery.respond`.
/// - Dead letters are published to the stream under the dead-letter subject, with the headers
///   named in ``DeadLetter``, once per event even if several members race.
///
/// The bus starts itself on first use (connect, ensure the stream); call ``start()`` to fail early
/// on a bad configuration or an unreachable server. As a `Service`, ``run()`` starts it, holds it
/// open, drains on graceful shutdown and closes on cancellation.
public final class JetStreamEventBus: EventBus, Service {
    /// The configuration.
    public let configuration: Configuration
    let logger: Logger
    private let state = Mutex(State())
    let ledger = DeliveryLedger()
    /// Publishes between their start and their ack, by either path: a publish that finds none
    /// is alone and goes out at once on the SendAsap connection.
    private let publishesInFlight = Atomic<Int>(0)

    /// A class, not a struct: every publish and subscribe reads it, and one reference costs one
    /// retain where a struct of six references cost six (and as many releases).
    final class Ready: Sendable {
        /// Consumers, acks, the asynchronous publisher, stream and consumer management.
        let connection: NATSConnection
        let jetStream: NATSJetStream
        let publisher: NATSJetStreamPublisher
        let replies: ReplyMultiplexer
        /// The same servers with SendAsap: every publish is written at once. For latency:
        /// lone publishes (a JetStream request through its request multiplexer), requests and
        /// replies.
        let direct: NATSConnection
        let directJetStream: NATSJetStream

        init(
            connection: NATSConnection, jetStream: NATSJetStream, publisher: NATSJetStreamPublisher,
            replies: ReplyMultiplexer, direct: NATSConnection, directJetStream: NATSJetStream
        ) {
            self.connection = connection
            self.jetStream = jetStream
            self.publisher = publisher
            self.replies = replies
            self.direct = direct
            self.directJetStream = directJetStream
        }
    }

    private enum Phase {
        case idle
        case starting([CheckedContinuation<Result<Ready, EventBusError>, Never>])
        case ready(Ready)
        case closed
    }

    private struct State: ~Copyable {
        var phase: Phase = .idle
        var subscriptions: [ObjectIdentifier: JetStreamSubscription] = [:]
        var stopRequested = false
        var stopWaiters: [CheckedContinuation<Void, Never>] = []
    }

    /// Creates a bus; nothing is connected until ``start()`` or the first operation.
    public init(configuration: Configuration, logger: Logger = Logger(label: "eventbus.jetstream")) {
        self.configuration = configuration
        self.logger = logger
    }

    /// What this backend provides: everything the conformance suite knows.
    public var capabilities: EventBusCapabilities {
        [.persistent, .survivesRestart, .consumerGroups, .exactlyOncePublish, .requestReply, .deadLetter]
    }

    // MARK: Lifecycle

    /// Connects and ensures the stream, once; later calls return at once.
    ///
    /// - Throws: ``EventBusError`` with `.invalidOption` for a bad configuration,
    ///   `.backendUnavailable` naming the servers (credentials redacted) and the reason when no
    ///   server could be reached or JetStream is not enabled.
    public func start() async throws {
        _ = try await ready()
    }

    /// The connected state, starting it on first use. Concurrent callers share one start.
    func ready() async throws(EventBusError) -> Ready {
        enum Step { case ready(Ready), closed, start, wait }
        let step: Step = state.withLock { state in
            switch state.phase {
            case .ready(let ready): return .ready(ready)
            case .closed: return .closed
            case .starting: return .wait
            case .idle:
                state.phase = .starting([])
                return .start
            }
        }
        switch step {
        case .ready(let ready):
            return ready
        case .closed:
            throw EventBusError(.closed, "the JetStream event bus is closed")
        case .start:
            // This caller runs the start; the others wait for its result.
            let result = await Self.performStart(configuration: configuration, logger: logger)
            let (waiters, closedMeanwhile) = state.withLock { state -> ([CheckedContinuation<Result<Ready, EventBusError>, Never>], Bool) in
                guard case .starting(let waiters) = state.phase else { return ([], true) }
                switch result {
                case .success(let ready): state.phase = .ready(ready)
                case .failure: state.phase = .idle
                }
                return (waiters, false)
            }
            if closedMeanwhile {
                if case .success(let ready) = result {
                    await ready.connection.close()
                    await ready.direct.close()
                }
                throw EventBusError(.closed, "the JetStream event bus was closed while starting")
            }
            for waiter in waiters { waiter.resume(returning: result) }
            return try result.get()
        case .wait:
            let result: Result<Ready, EventBusError> = await withCheckedContinuation { continuation in
                let immediate = state.withLock { state -> Result<Ready, EventBusError>? in
                    switch state.phase {
                    case .starting(var waiters):
                        waiters.append(continuation)
                        state.phase = .starting(waiters)
                        return nil
                    case .ready(let ready): return .success(ready)
                    case .closed, .idle: return .failure(EventBusError(.closed, "the JetStream event bus is not running"))
                    }
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
            return try result.get()
        }
    }

    private static func performStart(configuration: Configuration, logger: Logger) async -> Result<Ready, EventBusError> {
        do throws(NATSError) {
            try configuration.validate()
        } catch {
            return .failure(EventBusError(.invalidOption, "invalid JetStream event bus configuration: \(error.message)", underlying: error))
        }
        let servers = configuration.connection.servers.map(\.description).joined(separator: ", ")
        let connection: NATSConnection
        do {
            connection = try await NATSConnection.connect(configuration: configuration.connection, logger: logger)
        } catch {
            return .failure(
                EventBusError(.backendUnavailable, "cannot connect to NATS at \(servers): \(error.message)", underlying: error))
        }
        let jetStream = connection.jetStream(timeout: configuration.publishTimeout)
        var directConfiguration = configuration.connection
        directConfiguration.sendAsap = true
        directConfiguration.name = (configuration.connection.name ?? "eventbus") + "-direct"
        let direct: NATSConnection
        do {
            direct = try await NATSConnection.connect(configuration: directConfiguration, logger: logger)
        } catch {
            await connection.close()
            return .failure(
                EventBusError(.backendUnavailable, "cannot connect to NATS at \(servers): \(error.message)", underlying: error))
        }
        do {
            // Each attempt waits 2 s at most (less if publishes time out sooner): a stream without a
            // leader leaves requests unanswered, and waiting the full publish timeout (10 s by
            // default) per attempt used a third of the retry budget on one request.
            let attemptTimeout = min(configuration.publishTimeout, .seconds(2))
            try await ensureStreamThroughElections(
                connection.jetStream(timeout: attemptTimeout), configuration.stream, logger: logger)
            let publisher = try await jetStream.makePublisher(
                configuration: .init(maxPending: configuration.maxPendingPublishes, ackTimeout: configuration.publishTimeout))
            let replies = try await ReplyMultiplexer.make(connection: direct)
            logger.info(
                "JetStream event bus ready",
                metadata: ["servers": "\(servers)", "stream": "\(configuration.streamName)", "subjects": "\(configuration.effectiveStreamSubjects)"])
            return .success(
                Ready(
                    connection: connection, jetStream: jetStream, publisher: publisher, replies: replies, direct: direct,
                    directJetStream: direct.jetStream(timeout: configuration.publishTimeout)))
        } catch {
            await connection.close()
            await direct.close()
            return .failure(
                EventBusError(
                    .backendUnavailable,
                    "cannot set up stream '\(configuration.streamName)' on \(servers): \(error.message)", underlying: error))
        }
    }

    /// Creates or updates the stream, retrying for up to 30 s while it has no leader: a stream that
    /// another service is creating at this moment, or whose leader was just lost, leaves
    /// `STREAM.INFO` unanswered (timeout) or answers 503 until a leader is elected (seconds).
    /// Other errors fail at once.
    private static func ensureStreamThroughElections(
        _ jetStream: NATSJetStream, _ stream: NATSStreamConfiguration, logger: Logger
    ) async throws(NATSError) {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            do {
                try await jetStream.ensureStream(stream)
                return
            } catch where (error.code == .timeout || (error.code == .jetStream && error.isRetriable))
                && ContinuousClock.now < deadline && !Task.isCancelled
            {
                logger.warning(
                    "stream not ready (leader election?), retrying", metadata: ["stream": "\(stream.name)", "error": "\(error.message)"])
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    /// Closes every subscription, waits for pending publishes, drains and closes the connection.
    /// Operations after this throw `.closed`.
    public func close() async {
        let (ready, subscriptions, alreadyClosed, startWaiters, stopWaiters) = state.withLock {
            state -> (Ready?, [JetStreamSubscription], Bool, [CheckedContinuation<Result<Ready, EventBusError>, Never>], [CheckedContinuation<Void, Never>]) in
            if case .closed = state.phase { return (nil, [], true, [], []) }
            var ready: Ready?
            var startWaiters: [CheckedContinuation<Result<Ready, EventBusError>, Never>] = []
            if case .ready(let value) = state.phase { ready = value }
            if case .starting(let waiters) = state.phase { startWaiters = waiters }
            state.phase = .closed
            defer {
                state.subscriptions.removeAll()
                state.stopWaiters.removeAll()
            }
            return (ready, Array(state.subscriptions.values), false, startWaiters, state.stopWaiters)
        }
        for waiter in startWaiters { waiter.resume(returning: .failure(EventBusError(.closed, "the JetStream event bus was closed while starting"))) }
        for waiter in stopWaiters { waiter.resume() }
        if alreadyClosed { return }
        for subscription in subscriptions { await subscription.close() }
        guard let ready else { return }
        await ready.publisher.close()
        ready.replies.close()
        do {
            try await ready.connection.drain(timeout: .seconds(10))
        } catch {
            logger.warning("draining the NATS connection did not finish in time", metadata: ["error": "\(error)"])
        }
        do {
            try await ready.direct.drain(timeout: .seconds(10))
        } catch {
            logger.warning("draining the direct NATS connection did not finish in time", metadata: ["error": "\(error)"])
        }
    }

    /// Waits until ``close()`` is called or a stop is requested.
    private func waitUntilStopRequested() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state -> Bool in
                if case .closed = state.phase { return true }
                if state.stopRequested { return true }
                state.stopWaiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    private func requestStop() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.stopRequested = true
            defer { state.stopWaiters.removeAll() }
            return state.stopWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Starts the bus and holds it until graceful shutdown or cancellation, then closes it
    /// (draining what is in flight).
    public func run() async throws {
        try await start()
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                await waitUntilStopRequested()
            } onCancel: {
                requestStop()
            }
        } onGracefulShutdown: {
            self.requestStop()
        }
        await close()
    }

    // MARK: Publishing

    func natsSubject(for subject: String) -> String {
        "\(configuration.subjectPrefix).\(subject)"
    }

    func busSubject(fromNATS subject: String, prefix: String) -> String {
        subject.hasPrefix(prefix + ".") ? String(subject.dropFirst(prefix.count + 1)) : subject
    }

    /// Publishes an event and returns once the stream stored it.
    @discardableResult
    public func publish(_ event: Event) async throws -> PublishReceipt {
        try event.validateForPublish()
        return try await publish(event, messageID: event.id)
    }

    ///
    /// Cancelling the task while a lone publish waits for its ack throws `CancellationError`
    /// (the event may or may not be stored; publishing it again with the same id stores it once).
    func publish(_ event: Event, messageID: String) async throws -> PublishReceipt {
        let ready = try await ready()
        let headers = CloudEventsNATSBinding.headers(for: event)
        let subject = natsSubject(for: event.subject)
        let ack: NATSPublishAck
        let alone = publishesInFlight.add(1, ordering: .relaxed).oldValue == 0
        defer { publishesInFlight.subtract(1, ordering: .relaxed) }
        do {
            if alone {
                // Alone: a JetStream request on the SendAsap connection leaves at once.
                ack = try await ready.directJetStream.publish(
                    subject: subject, payload: event.data, headers: headers, options: .init(messageID: messageID))
            } else {
                // Others are in flight: join their window; cnats batches the writes.
                let pending = try await ready.publisher.publish(
                    subject: subject, payload: event.data, headers: headers, options: .init(messageID: messageID))
                ack = try await pending.ack()
            }
        } catch where error.code == .cancelled {
            throw CancellationError()
        } catch {
            throw EventBusError(mapping: error, what: "publishing '\(event.subject)'", fallback: .publishFailed)
        }
        return PublishReceipt(sequence: ack.sequence, duplicate: ack.duplicate, stream: ack.stream)
    }

    // MARK: Subscribing

    /// Subscribes; see the type's documentation for how groups map to consumers.
    public func subscribe(_ pattern: SubjectPattern, options: SubscriptionOptions) async throws -> EventSubscription {
        try options.validate()
        let ready = try await ready()
        let effective = effectiveOptions(options)
        let subscription = try await JetStreamSubscription.make(bus: self, ready: ready, pattern: pattern, options: effective)
        let accepted = state.withLock { state -> Bool in
            guard case .ready = state.phase else { return false }
            state.subscriptions[ObjectIdentifier(subscription)] = subscription
            return true
        }
        if !accepted {
            await subscription.close()
            throw EventBusError(.closed, "the JetStream event bus is closed")
        }
        return EventSubscription(subscription)
    }

    /// Applies the bus's defaults where the options keep the library's.
    func effectiveOptions(_ options: SubscriptionOptions) -> SubscriptionOptions {
        var options = options
        if options.ackWait == SubscriptionOptions.defaultAckWait { options.ackWait = configuration.ackWait }
        if options.maxDeliver == SubscriptionOptions.defaultMaxDeliver { options.maxDeliver = configuration.maxDeliver }
        if options.maxInFlight == SubscriptionOptions.defaultMaxInFlight { options.maxInFlight = configuration.maxAckPending }
        return options
    }

    func forget(_ subscription: JetStreamSubscription) {
        _ = state.withLock { $0.subscriptions.removeValue(forKey: ObjectIdentifier(subscription)) }
    }

    // MARK: Request/reply

    /// Sends a request to the subscribers of the event's subject and waits for the first reply.
    public func request(_ event: Event, timeout: Duration) async throws -> Event {
        try event.validateForPublish()
        if timeout <= .zero { throw EventBusError(.invalidOption, "request timeout \(timeout) must be positive") }
        let ready = try await ready()
        let subject = "\(configuration.requestSubjectPrefix).\(event.subject)"
        let reply = try await ready.replies.request(
            subject: subject, headers: CloudEventsNATSBinding.headers(for: event), payload: event.data, timeout: timeout,
            what: "request '\(event.subject)'")
        let replySubject = CloudEventsNATSBinding.subjectAttribute(in: reply.headers) ?? event.subject
        return CloudEventsNATSBinding.event(subject: replySubject, headers: reply.headers, payload: reply.payload.bytes)
    }
}

extension EventBusError {
    /// Translates a client error into the bus's terms.
    init(mapping error: NATSError, what: String, fallback: Code) {
        let code: Code
        switch error.code {
        case .connectionClosed, .connectionDraining: code = .closed
        case .timeout: code = .timeout
        case .noResponders: code = fallback == .publishFailed ? .publishFailed : .noResponders
        case .alreadyAcknowledged: code = .alreadyAcknowledged
        case .invalidSubject: code = .invalidSubject
        case .payloadTooLarge, .invalidHeader: code = .invalidEvent
        case .jetStreamNotEnabled, .noServers, .notConnected: code = .backendUnavailable
        default: code = fallback
        }
        self.init(code, "\(what): \(error.message)", isRetriable: error.isRetriable || code == .timeout, underlying: error)
    }
}
