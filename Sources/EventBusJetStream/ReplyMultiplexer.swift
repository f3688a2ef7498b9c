import EventBus
import NATS
import Synchronization

/// Request/reply over one wildcard inbox subscription: each request gets a token, replies are
/// matched on the cnats delivery thread and resume their waiting task. Unlike a blocking request
/// per call, any number of requests can be in flight without a thread each. The bus gives it
/// its SendAsap connection, so that requests leave at once; the inbox is subscribed on the same
/// connection, because the server only answers "no responders" to a client that listens on the
/// reply subject itself.
final class ReplyMultiplexer: Sendable {
    private let connection: NATSConnection
    private let prefix: String
    private let waiting = Mutex<(next: UInt64, continuations: [UInt64: CheckedContinuation<Result<NATSMessage, EventBusError>, Never>])>((1, [:]))
    private let subscription = Mutex<NATSHandlerSubscription?>(nil)

    private init(connection: NATSConnection) {
        self.connection = connection
        prefix = connection.newInbox() + "."
    }

    static func make(connection: NATSConnection) async throws(NATSError) -> ReplyMultiplexer {
        let multiplexer = ReplyMultiplexer(connection: connection)
        let handler = try await connection.subscribeWithHandler(
            to: multiplexer.prefix + "*",
            onComplete: { [weak multiplexer] in multiplexer?.failAll(EventBusError(.closed, "the connection closed before the reply arrived")) },
            handler: { [weak multiplexer] message in multiplexer?.received(message) })
        multiplexer.subscription.withLock { $0 = handler }
        return multiplexer
    }

    func close() {
        subscription.withLock { $0?.unsubscribe() }
        failAll(EventBusError(.closed, "the JetStream event bus closed before the reply arrived"))
    }

    private func received(_ message: NATSMessage) {
        guard let dot = message.subject.lastIndex(of: "."),
            let token = UInt64(message.subject[message.subject.index(after: dot)...]),
            let continuation = waiting.withLock({ $0.continuations.removeValue(forKey: token) })
        else { return }
        if message.payload.isEmpty, message.headers["Status"] == "503" {
            continuation.resume(returning: .failure(EventBusError(.noResponders, "no subscriber answers requests on this subject")))
        } else {
            continuation.resume(returning: .success(message))
        }
    }

    private func failAll(_ error: EventBusError) {
        let continuations = waiting.withLock { state in
            defer { state.continuations.removeAll() }
            return Array(state.continuations.values)
        }
        for continuation in continuations { continuation.resume(returning: .failure(error)) }
    }

    private func fail(_ token: UInt64, _ error: EventBusError) {
        waiting.withLock { $0.continuations.removeValue(forKey: token) }?.resume(returning: .failure(error))
    }

    /// Publishes a request and waits for its first reply (or the timeout, or "no responders").
    func request(
        subject: String,
        headers: NATSHeaders,
        payload: [UInt8],
        timeout: Duration,
        what: String
    ) async throws(EventBusError) -> NATSMessage {
        let token = waiting.withLock { state -> UInt64 in
            defer { state.next += 1 }
            return state.next
        }
        let result: Result<NATSMessage, EventBusError> = await withTaskGroup(of: Void.self) { group in
            let outcome: Result<NATSMessage, EventBusError> = await withCheckedContinuation { continuation in
                waiting.withLock { $0.continuations[token] = continuation }
                do {
                    try connection.publish(subject: subject, payload: payload, headers: headers, replyTo: prefix + String(token))
                } catch let error as NATSError {
                    fail(token, EventBusError(mapping: error, what: what, fallback: .backendUnavailable))
                    return
                } catch {
                    fail(token, EventBusError(.backendUnavailable, "\(what): \(error)"))
                    return
                }
                group.addTask { [weak self] in
                    try? await Task.sleep(for: timeout)
                    if !Task.isCancelled {
                        self?.fail(token, EventBusError(.timeout, "\(what): no reply within \(timeout)"))
                    }
                }
            }
            group.cancelAll()
            return outcome
        }
        switch result {
        case .success(let message): return message
        case .failure(let error) where error.code == .noResponders:
            throw EventBusError(.noResponders, "\(what): no subscriber answers requests on '\(subject)'")
        case .failure(let error): throw error
        }
    }
}

/// Remembers, per consumer and stream sequence, the latest delivery this process handed out, so
/// that settling an older delivery of the same event (its ack wait expired and it came back) is
/// refused as the in-memory bus refuses it, instead of acknowledging the newer one by accident.
///
/// One ``ConsumerLedger`` per consumer, shared by this process's subscriptions to it (members of
/// one group); a subscription looks its ledger up once, so a delivery costs no hashing of the
/// consumer's name. A ledger lives while a subscription uses it.
final class DeliveryLedger: Sendable {
    private let consumers = Mutex<[String: (ledger: ConsumerLedger, users: Int)]>([:])

    /// The consumer's ledger, for a new subscription to it; give it back with ``release(_:)``.
    func acquire(_ consumer: String) -> ConsumerLedger {
        consumers.withLock { consumers in
            if let existing = consumers[consumer] {
                consumers[consumer] = (existing.ledger, existing.users + 1)
                return existing.ledger
            }
            let ledger = ConsumerLedger()
            consumers[consumer] = (ledger, 1)
            return ledger
        }
    }

    /// A subscription to `consumer` ended; the ledger goes when the last one did.
    func release(_ consumer: String) {
        consumers.withLock { consumers in
            guard let existing = consumers[consumer] else { return }
            consumers[consumer] = existing.users > 1 ? (existing.ledger, existing.users - 1) : nil
        }
    }
}

/// The deliveries of one consumer (see ``DeliveryLedger``).
final class ConsumerLedger: Sendable {
    private struct Entry {
        var attempt: UInt64
        var settled: Bool
    }

    private let entries = Mutex<[UInt64: Entry]>([:])
    private static let pruneThreshold = 100_000

    /// Records a delivery. First deliveries make no entry: only a redelivery can make an older
    /// delivery stale, so the ledger holds redeliveries alone, and a stream read once (the common
    /// case) costs no lock or hash here and an empty-table check when settled.
    func delivered(sequence: UInt64, attempt: UInt64) {
        guard attempt > 1 else { return }
        entries.withLock { entries in
            if let existing = entries[sequence], existing.attempt > attempt { return }
            entries[sequence] = Entry(attempt: attempt, settled: false)
            if entries.count > Self.pruneThreshold {
                entries = entries.filter { !$0.value.settled }
            }
        }
    }

    /// Whether `attempt` is still the newest delivery of `sequence` (or unknown here).
    func isCurrent(sequence: UInt64, attempt: UInt64) -> Bool {
        entries.withLock { entries in
            guard !entries.isEmpty, let entry = entries[sequence] else { return true }
            return entry.attempt == attempt
        }
    }

    /// Records that `attempt` was settled. A settled redelivery is kept, to refuse the older
    /// deliveries still held, until the ledger is pruned. So the ledger holds outstanding and
    /// settled redeliveries, not one entry per event ever delivered.
    func settled(sequence: UInt64, attempt: UInt64) {
        guard attempt > 1 else { return }
        entries.withLock { entries in
            guard entries[sequence]?.attempt == attempt else { return }
            entries[sequence]?.settled = true
        }
    }
}
