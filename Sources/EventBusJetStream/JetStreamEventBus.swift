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
///   it (the receipt carries the stream sequence and whether it was a duplicate). Every publish,
///   lone or one of many, goes through one engine: a bounded window of publishes awaiting their
///   acks on the bus's one connection. A publish that finds at most 15 others in the window is
///   written at once (one round trip); beyond 16 in flight cnats batches the writes.
///   ``publish(contentsOf:)`` publishes a batch without a task per event.
/// - `subscribe` with a group binds to the durable pull consumer of that group and pattern (created
///   on first use, named `<group>-<hash of the pattern>`); without a group it creates an ephemeral
///   consumer. Both start where `SubscriptionOptions.start` says (an existing group resumes).
///   `subscribe` returns once the consumer exists on the server.
/// - `request` sends a core NATS request (not stored) to the subscribers of the subject; a
///   subscriber answers with `delivery.respond`.
/// - Dead letters are published to the stream under the dead-letter subject, with the headers
///   named in `DeadLetter`, once per event even if several members race.
///
/// Run the bus as a `Service` (in a `ServiceGroup`, or call ``run()``): `run()` connects, owns
/// the bus's background work (it turns the server's max-deliveries advisories into dead letters
/// for events whose ack wait expired on their last attempt), drains on graceful shutdown and
/// closes on cancellation. Publishing and subscribing also start the bus on first use (connect,
/// create or check the stream), and ``start()`` fails early on a bad configuration or an unreachable
/// server; without `run()` everything works except that dead-lettering of expired last attempts
/// waits until `run()` is called (a warning says so).
public final class JetStreamEventBus: EventBus, Service {
    /// The configuration.
    public let configuration: Configuration
    let logger: Logger
    /// Metrics, spans and per-event logs (inactive unless the application bootstrapped them).
    let telemetry: EventBusTelemetry
    private let state = Mutex(State())
    let ledger = DeliveryLedger()
    /// Max-deliveries advisories waiting for ``run()`` to dead-letter their events.
    let maxDeliveries: MaxDeliveriesQueue
    /// The listeners of ``recoveryEvents``.
    let recoveryBroadcaster = RecoveryBroadcaster()

    /// A class, not a struct: every publish and subscribe reads it, and one reference costs one
    /// retain where a struct of several references cost as many.
    final class Ready: Sendable {
        /// Consumers, acks, publishes, requests and replies, stream and consumer management.
        let connection: NATSConnection
        let jetStream: NATSJetStream
        /// The one publish engine: a bounded window of publishes awaiting their acks.
        let publisher: NATSJetStreamPublisher
        /// The stream's max-deliveries advisories (one subscription per bus).
        let advisories: NATSHandlerSubscription

        init(connection: NATSConnection, jetStream: NATSJetStream, publisher: NATSJetStreamPublisher, advisories: NATSHandlerSubscription) {
            self.connection = connection
            self.jetStream = jetStream
            self.publisher = publisher
            self.advisories = advisories
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

    /// Creates a bus; nothing is connected until ``run()``, ``start()`` or the first operation.
    ///
    /// - Parameters:
    ///   - configuration: The connection, the stream and the subscription defaults; checked by
    ///     ``start()``.
    ///   - logger: Where the bus and its connection log.
    ///   - observability: Where metrics and spans go; by default what the application
    ///     bootstrapped (docs/observability.md).
    public init(
        configuration: Configuration,
        logger: Logger = Logger(label: "eventbus.jetstream"),
        observability: EventBusObservability = .bootstrapped
    ) {
        self.configuration = configuration
        self.logger = logger
        telemetry = EventBusTelemetry(
            backend: .jetstream, stream: configuration.streamName, logger: logger, observability: observability)
        maxDeliveries = MaxDeliveriesQueue(logger: logger)
    }

    /// What this backend provides: everything the conformance suite knows.
    public var capabilities: EventBusCapabilities {
        [.persistent, .survivesRestart, .consumerGroups, .exactlyOncePublish, .requestReply, .deadLetter, .deadLetterQueue]
    }

    // MARK: Lifecycle

    /// Connects, creates the stream when it is missing or checks the one it finds (see
    /// ``Configuration/streamUpdatePolicy``), once; later calls return at once.
    ///
    /// - Throws: `EventBusError` with `.invalidOption` for a bad configuration (also for
    ///   ``Configuration/replicas`` above what the servers can place, which only they know),
    ///   `.backendUnavailable` naming the servers (credentials redacted) and the reason when no
    ///   server could be reached or JetStream is not enabled, `.streamUnusable` (not retriable)
    ///   naming the field, the value found and the fix when the existing stream cannot carry the
    ///   bus.
    public func start() async throws {
        _ = try await ready()
    }

    /// The connected state if the bus has started, without waiting.
    @inline(never)
    func readyNow() -> Ready? {
        state.withLock { state in
            guard case .ready(let ready) = state.phase else { return nil }
            return ready
        }
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
            let result = await performStart()
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

    private func performStart() async -> Result<Ready, EventBusError> {
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
        do {
            // Each attempt waits 2 s at most (less if publishes time out sooner): a stream without a
            // leader leaves requests unanswered, and waiting the full publish timeout (10 s by
            // default) per attempt used a third of the retry budget on one request.
            let attemptTimeout = min(configuration.publishTimeout, .seconds(2))
            // The stream is created when missing, or checked (and updated only under
            // `StreamUpdatePolicy.update`; see JetStreamEventBus+StreamPolicy.swift).
            let attempts = connection.jetStream(timeout: attemptTimeout)
            try await retryingThroughElections("stream '\(configuration.streamName)'", logger: logger) { () throws(NATSError) in
                try await Self.applyStreamPolicy(attempts, configuration, logger: logger)
            }
            let publisher = try await jetStream.makePublisher(
                configuration: .init(maxPending: configuration.maxPendingPublishes, ackTimeout: configuration.publishTimeout))
            // One subscription for the whole stream; the queue keeps only advisories of consumers
            // this process has members of, for run() to handle off the delivery path.
            let queue = maxDeliveries
            let advisories = try await connection.subscribeWithHandler(
                to: "\(maxDeliveriesAdvisoryPrefix)\(configuration.streamName).*",
                handler: { [weak self] message in
                    guard let self else { return }
                    queue.offer(message, isLocal: { self.subscriptionOptions(forConsumer: $0) != nil })
                })
            logger.info(
                "JetStream event bus ready",
                metadata: ["servers": "\(servers)", "stream": "\(configuration.streamName)", "subjects": "\(configuration.effectiveStreamSubjects)"])
            return .success(Ready(connection: connection, jetStream: jetStream, publisher: publisher, advisories: advisories))
        } catch where configuration.replicas > 1
            && error.jetStreamErrorCode.map({ [NATSJetStreamErrorCode.replicasNotSupported, NATSJetStreamErrorCode.noSuitablePeers, NATSJetStreamErrorCode.insufficientResources].contains($0) }) == true
        {
            // Only the servers know how many of them can hold a replica: a single server refuses
            // any replicas above 1, a cluster those above its JetStream servers (or those up now).
            await connection.close()
            let single = error.jetStreamErrorCode == NATSJetStreamErrorCode.replicasNotSupported
            return .failure(
                EventBusError(
                    .invalidOption,
                    "stream '\(configuration.streamName)' with \(configuration.replicas) replicas (EVENT_BUS_JETSTREAM_REPLICAS, JetStreamEventBus.Configuration.replicas) cannot be placed on \(servers): "
                        + (single
                            ? "the server is not part of a JetStream cluster, so it holds 1 replica"
                            : "the cluster has fewer JetStream servers available than replicas")
                        + " (server: \(error.message)); set the replicas to at most the cluster's size",
                    isRetriable: !single, underlying: error))
        } catch where error.code == .invalidConfiguration {
            // The stream exists but cannot carry the bus: starting again will not help.
            await connection.close()
            return .failure(EventBusError(.streamUnusable, error.message, isRetriable: false, underlying: error))
        } catch {
            await connection.close()
            return .failure(
                EventBusError(
                    .backendUnavailable,
                    "cannot set up stream '\(configuration.streamName)' on \(servers): \(error.message)", underlying: error))
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
        // Side by side: each ephemeral consumer's removal is a round trip (up to its timeout
        // while the server is unreachable).
        await withTaskGroup(of: Void.self) { group in
            for subscription in subscriptions {
                group.addTask { await subscription.close(handingBackOutstanding: false) }
            }
        }
        maxDeliveries.finish()
        recoveryBroadcaster.finish()
        guard let ready else { return }
        ready.advisories.unsubscribe()
        await ready.publisher.close()
        do {
            try await ready.connection.drain(timeout: .seconds(10))
        } catch {
            // A timeout, or a connection that closed first (a reconnect that failed): publishes still
            // held may not have been sent.
            logger.warning("draining the NATS connection did not complete", metadata: ["error": "\(error)"])
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

    /// Starts the bus, runs its background work until graceful shutdown or cancellation, then
    /// closes it: subscriptions end and hand back what they hold, publishes in flight get their
    /// outcome, the connection drains.
    ///
    /// The background work: events whose ack wait expired on their last attempt are announced by
    /// the server in an advisory, and moved to the dead-letter subject here (read back from the
    /// stream and published), never on a subscriber's delivery path.
    public func run() async throws {
        try await start()
        maxDeliveries.markRunning()
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { await self.deadLetterExpiredLastAttempts() }
                    await waitUntilStopRequested()
                    maxDeliveries.finish()
                    await group.waitForAll()
                }
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
    ///
    /// Cancelling the task while it waits for the ack throws `CancellationError` (the event may or
    /// may not be stored; publishing it again with the same id stores it once). A publish that
    /// gets no ack within ``Configuration/publishTimeout`` fails with a retriable `.timeout`.
    @discardableResult
    public func publish(_ event: Event) async throws -> PublishReceipt {
        // The async functions of a publish stay small, their synchronous work in functions that
        // are not inlined into them: a task's frames that outgrow its allocator's first slab
        // cost a malloc each, and a service that publishes from a task per request or per event
        // pays that on every publish.
        if telemetry.isActive { return try await publishObserved(event) }
        let event = try checkedForPublish(event)
        return try await publish(event, messageID: event.id)
    }

    /// A publish observed by the bus's telemetry (spans, metrics or trace logs).
    @inline(never)
    private func publishObserved(_ event: Event) async throws -> PublishReceipt {
        var event = event
        guard let scope = try prepareForPublish(&event) else { return try await publish(event, messageID: event.id) }
        do {
            let receipt = try await publish(event, messageID: event.id)
            scope.succeeded(event, receipt)
            return receipt
        } catch {
            scope.failed(event, error)
            throw error
        }
    }

    @inline(__always)
    func publish(_ event: Event, messageID: String) async throws -> PublishReceipt {
        // A started bus with room in its window sends without suspending; the other cases wait
        // in functions of their own, so that this frame (kept for the whole wait for the ack)
        // holds little more than the publish's record.
        let pending: NATSPendingPublish
        if let ready = readyNow() {
            // `send(_:messageID:on:)` inlined by hand: as a call, its frame would join this
            // task's chain of frames for the whole publish.
            switch try startPublish(event, messageID: messageID, on: ready) {
            case .sent(let sent): pending = sent
            case .windowFull(let record): pending = try await send(record, subject: event.subject)
            }
        } else {
            pending = try await startAndPublish(event, messageID: messageID)
        }
        await pending.waitForOutcome()
        return try Self.receipt(of: pending, subject: event.subject)
    }

    /// A publish handed to the window, or one waiting for room in it.
    private enum PublishStart {
        case sent(NATSPendingPublish)
        case windowFull(NATSPendingPublish)
    }

    /// Builds an event's publish and sends it if the window has room (synchronous: its work
    /// stays off the task's allocator).
    ///
    /// This and the other steps of a publish throw only ``EventBusError``, but untyped: a typed
    /// throw keeps room for the error in each async caller's frame (with typed throws the lone
    /// publish's frame was 368 bytes, without 128), and a task per publish pays for every slab
    /// of frames it outgrows with a malloc.
    @inline(never)
    private func startPublish(_ event: Event, messageID: String, on ready: Ready) throws -> PublishStart {
        let (subject, headers) = wireForm(of: event)
        let record = ready.publisher.pendingPublish(
            subject: subject, payload: event.data, headers: headers, options: .init(messageID: messageID))
        do {
            return try ready.publisher.sendIfRoom(record) ? .sent(record) : .windowFull(record)
        } catch {
            throw Self.publishError(error, subject: event.subject)
        }
    }

    /// Starts the bus (or waits for its start), then sends the publish.
    @inline(never)
    private func startAndPublish(_ event: Event, messageID: String) async throws -> NATSPendingPublish {
        try await send(event, messageID: messageID, on: try await ready())
    }

    /// Sends an event's publish: at once while the window has room, otherwise once it has.
    @inline(never)
    private func send(_ event: Event, messageID: String, on ready: Ready) async throws -> NATSPendingPublish {
        switch try startPublish(event, messageID: messageID, on: ready) {
        case .sent(let pending): return pending
        case .windowFull(let record): return try await send(record, subject: event.subject)
        }
    }

    /// Sends a publish once the window has room (waiting while it is full); the outcome follows.
    @inline(never)
    private func send(_ record: NATSPendingPublish, subject: String) async throws -> NATSPendingPublish {
        do {
            try await record.publisher.send(record)
            return record
        } catch {
            throw Self.publishError(error, subject: subject)
        }
    }

    /// Checks an event before anything is sent and starts its telemetry (nil when off).
    @inline(never)
    private func prepareForPublish(_ event: inout Event) throws -> EventBusTelemetry.PublishScope? {
        try event.validateForPublish()
        return telemetry.preparePublish(&event)
    }

    /// Checks an event before anything is sent, with the telemetry off: the event as it is
    /// published (trace context that fails the W3C checks dropped).
    @inline(never)
    private func checkedForPublish(_ event: Event) throws -> Event {
        var event = event
        _ = try prepareForPublish(&event)
        return event
    }

    /// The receipt of a lone publish's outcome, or the error it throws (read here, not in the
    /// async caller, whose frame would keep room for it).
    @inline(never)
    private static func receipt(of pending: NATSPendingPublish, subject: String) throws -> PublishReceipt {
        switch pending.outcomeOrCancelled {
        case .success(let ack):
            return PublishReceipt(sequence: ack.sequence, duplicate: ack.duplicate, stream: ack.stream)
        case .failure(let error) where error.code == .cancelled:
            throw CancellationError()
        case .failure(let error):
            throw publishError(error, subject: subject)
        }
    }

    /// Publishes a batch through the same window as single publishes: the events are sent as
    /// fast as the window allows (waiting only while it is full), then their acks are collected
    /// in order. The rules are those of `EventBus.publish(contentsOf:)`.
    @discardableResult
    public func publish(contentsOf events: [Event]) async throws -> [PublishReceipt] {
        for event in events { try event.validateForPublish() }
        var events = events
        var scopes: [EventBusTelemetry.PublishScope?] = []
        if telemetry.isActive { scopes.reserveCapacity(events.count) }
        for index in events.indices {
            let scope = telemetry.preparePublish(&events[index])
            if telemetry.isActive { scopes.append(scope) }
        }
        let ready: Ready
        do {
            ready = try await self.ready()
        } catch {
            for (index, scope) in scopes.enumerated() { scope?.failed(events[index], error) }
            throw error
        }
        let sent = await EventBusError.eachOfBatch(events) { event throws(EventBusError) in
            do {
                return try await send(event, messageID: event.id, on: ready)
            } catch {
                throw EventBusError.batchFailure(error, of: event)
            }
        }
        var outcomes: [Result<PublishReceipt, EventBusError>] = []
        outcomes.reserveCapacity(events.count)
        for (index, attempt) in sent.enumerated() {
            switch attempt {
            case .failure(let error):
                outcomes.append(.failure(error))
            case .success(let pending):
                // An outcome that is already known costs no suspension.
                switch await pending.result() {
                case .success(let ack):
                    outcomes.append(.success(PublishReceipt(sequence: ack.sequence, duplicate: ack.duplicate, stream: ack.stream)))
                case .failure(let error) where error.code == .cancelled:
                    outcomes.append(
                        .failure(
                            EventBusError(
                                .publishFailed,
                                "event '\(events[index].id)' to '\(events[index].subject)' was sent but the task was cancelled before its ack: it may or may not be stored; publish it again (its id keeps it from being stored twice)",
                                isRetriable: true, underlying: error)))
                case .failure(let error):
                    outcomes.append(
                        .failure(Self.publishError(error, subject: events[index].subject)))
                }
            }
        }
        if !scopes.isEmpty {
            for (index, outcome) in outcomes.enumerated() {
                switch outcome {
                case .success(let receipt): scopes[index]?.succeeded(events[index], receipt)
                case .failure(let error): scopes[index]?.failed(events[index], error)
                }
            }
        }
        return try EventBusError.receipts(from: outcomes)
    }

    /// The NATS subject and headers an event is published with.
    @inline(never)
    private func wireForm(of event: Event) -> (subject: String, headers: NATSHeaders) {
        (natsSubject(for: event.subject), CloudEventsNATSBinding.headers(for: event))
    }

    /// A failed publish's error, for a lone publish and each event of a batch alike.
    @inline(never)
    private static func publishError(_ error: NATSError, subject: String) -> EventBusError {
        EventBusError(mapping: error, what: "publishing '\(subject)'", fallback: .publishFailed)
    }

    // MARK: Subscribing

    /// Subscribes; see the type's documentation for how groups map to consumers.
    public func subscribe(_ pattern: SubjectPattern, options: SubscriptionOptions) async throws -> EventSubscription {
        try options.validate()
        let ready = try await ready()
        let effective = effectiveOptions(options)
        let limitName = options.maxInFlight == SubscriptionOptions.defaultMaxInFlight ? "maxAckPending" : "maxInFlight"
        // The bus's maxAckPending may stand in for the default maxInFlight: check against what is in force.
        try effective.validateConcurrency(maxInFlight: effective.maxInFlight, limitName: limitName)
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
        return EventSubscription(
            subscription,
            consumer: ConsumerSettings(
                ackWait: effective.ackWait, maxInFlight: effective.maxInFlight, maxInFlightName: limitName, logger: logger,
                deliveryThread: subscription.deliveryThreadLoop))
    }

    /// Applies the bus's defaults where the options keep the library's.
    func effectiveOptions(_ options: SubscriptionOptions) -> SubscriptionOptions {
        var options = options
        if options.ackWait == SubscriptionOptions.defaultAckWait { options.ackWait = configuration.ackWait }
        if options.maxDeliver == SubscriptionOptions.defaultMaxDeliver { options.maxDeliver = configuration.maxDeliver }
        if options.maxInFlight == SubscriptionOptions.defaultMaxInFlight { options.maxInFlight = configuration.maxAckPending }
        return options
    }

    /// Where the bus is, for ``health()``: its connection once started, or whether it is closed.
    func lifecycleForHealth() -> (connection: NATSConnection?, closed: Bool) {
        state.withLock { state in
            switch state.phase {
            case .ready(let ready): (ready.connection, false)
            case .closed: (nil, true)
            case .idle, .starting: (nil, false)
            }
        }
    }

    /// This process's open subscriptions.
    func subscriptions() -> [JetStreamSubscription] {
        state.withLock { Array($0.subscriptions.values) }
    }

    func forget(_ subscription: JetStreamSubscription) {
        _ = state.withLock { $0.subscriptions.removeValue(forKey: ObjectIdentifier(subscription)) }
    }

    // MARK: Request/reply

    /// Sends a request to the subscribers of the event's subject and waits for the first reply.
    ///
    /// The request goes through the connection's request multiplexer (written at once, the reply
    /// handed over from cnats's delivery thread). Cancelling the task throws `CancellationError`
    /// at once, whether or not anybody answers.
    public func request(_ event: Event, timeout: Duration) async throws -> Event {
        // As for a publish, the synchronous steps run in functions of their own and the steps
        // that wait throw untyped errors: this frame stays a few hundred bytes, where the whole
        // request in one function took over 1 KB (a malloc per request from a task of its own).
        let event = try checkedForRequest(event, timeout: timeout)
        let ready: Ready
        if let started = readyNow() { ready = started } else { ready = try await readyForRequest() }
        let reply = try await sendRequest(event, timeout: timeout, on: ready)
        return Self.replyEvent(reply, to: event)
    }

    /// Checks a request before anything is sent: the event as it is sent.
    @inline(never)
    private func checkedForRequest(_ event: Event, timeout: Duration) throws -> Event {
        try event.validateForPublish()
        if timeout <= .zero { throw EventBusError(.invalidOption, "request timeout \(timeout) must be positive") }
        return telemetry.checkedOutgoing(event)
    }

    /// ``ready()`` for a request that found the bus not started.
    @inline(never)
    private func readyForRequest() async throws -> Ready {
        try await ready()
    }

    /// Sends a request and waits for its reply; the client's errors in the bus's terms.
    @inline(never)
    private func sendRequest(_ event: Event, timeout: Duration, on ready: Ready) async throws -> NATSMessage {
        do {
            return try await ready.connection.request(
                subject: "\(configuration.requestSubjectPrefix).\(event.subject)", payload: event.data,
                headers: CloudEventsNATSBinding.headers(for: event), timeout: timeout)
        } catch {
            throw Self.requestError(error, event: event, timeout: timeout)
        }
    }

    /// A failed request's error in the bus's terms (`CancellationError` when the waiting task
    /// was cancelled).
    @inline(never)
    private static func requestError(_ error: NATSError, event: Event, timeout: Duration) -> any Error {
        let what = "request '\(event.subject)'"
        switch error.code {
        case .cancelled: return CancellationError()
        case .noResponders:
            return EventBusError(.noResponders, "\(what): no subscriber answers requests on '\(event.subject)'", underlying: error)
        case .timeout: return EventBusError(.timeout, "\(what): no reply within \(timeout)", underlying: error)
        default: return EventBusError(mapping: error, what: what, fallback: .backendUnavailable)
        }
    }

    /// The event a reply carries.
    @inline(never)
    private static func replyEvent(_ reply: NATSMessage, to event: Event) -> Event {
        let replySubject = CloudEventsNATSBinding.subjectAttribute(in: reply.headers) ?? event.subject
        return CloudEventsNATSBinding.event(subject: replySubject, headers: reply.headers, payload: reply.payload.bytes)
    }
}

extension EventBusError.Code {
    /// The JetStream stream exists but cannot carry the bus (its subjects miss the bus's prefix,
    /// work-queue retention, no duplicate window, ...); the message names the field, the value
    /// found and the fix. Not retriable: the operator must change the stream, or allow the bus
    /// to update it (``JetStreamEventBus/Configuration/streamUpdatePolicy``).
    public static let streamUnusable = EventBusError.Code("streamUnusable")
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
        case .jetStreamNotEnabled, .noServers, .notConnected, .authenticationFailed, .tls: code = .backendUnavailable
        case .permissionDenied: code = .permissionDenied
        default: code = fallback
        }
        self.init(code, "\(what): \(error.message)", isRetriable: error.isRetriable || code == .timeout, underlying: error)
    }
}
