import EventBus
import Logging
import NATS
import Synchronization

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The subject prefix of the server's "max deliveries reached" advisories.
let maxDeliveriesAdvisoryPrefix = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES."

/// Max-deliveries advisories on their way from cnats's delivery thread to the bus's ``JetStreamEventBus/run()``.
///
/// When an event's ack wait expires on its last attempt, no handler settled it, so no subscriber
/// can dead-letter it; the server stops delivering it and publishes an advisory instead. Every
/// process with members of the consumer receives it (a plain subscription, not a queue group:
/// the advisory subject cannot say which processes have members); each dead-letters the event
/// with the same message id, so the stream stores the dead letter once.
///
/// Bounded: advisories come one per expired last attempt, and past ``capacity`` waiting ones the
/// newest are dropped with an error log (the event itself stays in the stream).
final class MaxDeliveriesQueue: Sendable {
    static let capacity = 10_000

    private struct State: ~Copyable {
        var waiting: [NATSMessage] = []
        var consumer: UnsafeContinuation<[NATSMessage]?, Never>?
        var running = false
        var warnedNotRunning = false
        var finished = false
    }

    private let state = Mutex(State())
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    /// Called on the delivery thread for every advisory of the stream; keeps those of consumers
    /// this process has members of.
    func offer(_ advisory: NATSMessage, isLocal: (String) -> Bool) {
        guard let dot = advisory.subject.lastIndex(of: "."),
            isLocal(String(advisory.subject[advisory.subject.index(after: dot)...]))
        else { return }
        enum Outcome { case resume(UnsafeContinuation<[NATSMessage]?, Never>), queued(warnNotRunning: Bool), dropped }
        let outcome: Outcome = state.withLock { state in
            if state.finished { return .dropped }
            if let consumer = state.consumer {
                state.consumer = nil
                return .resume(consumer)
            }
            guard state.waiting.count < Self.capacity else { return .dropped }
            state.waiting.append(advisory)
            let warn = !state.running && !state.warnedNotRunning
            if warn { state.warnedNotRunning = true }
            return .queued(warnNotRunning: warn)
        }
        switch outcome {
        case .resume(let consumer):
            consumer.resume(returning: [advisory])
        case .queued(let warnNotRunning):
            if warnNotRunning {
                logger.warning(
                    "an event reached its max deliveries with its ack wait expired, but the bus's run() is not running: it is dead-lettered once run() runs (run the bus in a ServiceGroup)",
                    metadata: ["advisory": "\(advisory.subject)"])
            }
        case .dropped:
            logger.error(
                "max-deliveries advisory dropped (\(Self.capacity) waiting, or the bus is closing): its event stays in the stream but is not dead-lettered",
                metadata: ["advisory": "\(advisory.subject)"])
        }
    }

    func markRunning() {
        state.withLock { $0.running = true }
    }

    /// The advisories waiting (all of them, so that taking them costs no shifting of the rest),
    /// or `nil` once ``finish()`` was called and nothing waits.
    func next() async -> [NATSMessage]? {
        await withUnsafeContinuation { continuation in
            let ready = state.withLock { state -> [NATSMessage]?? in
                if !state.waiting.isEmpty {
                    defer { state.waiting = [] }
                    return .some(state.waiting)
                }
                if state.finished { return .some(nil) }
                state.consumer = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    /// Ends ``next()``: what is still waiting is handed out first.
    func finish() {
        let consumer = state.withLock { state -> UnsafeContinuation<[NATSMessage]?, Never>? in
            state.finished = true
            defer { state.consumer = nil }
            return state.consumer
        }
        consumer?.resume(returning: nil)
    }
}

extension JetStreamEventBus {
    /// The options of a subscription of this process to `consumer`, if it has one.
    func subscriptionOptions(forConsumer consumer: String) -> SubscriptionOptions? {
        subscriptions().first { $0.consumerName == consumer }?.options
    }

    /// Run by ``run()``: dead-letters the event of each max-deliveries advisory until the queue
    /// finishes.
    func deadLetterExpiredLastAttempts() async {
        while let advisories = await maxDeliveries.next() {
            for advisory in advisories { await deadLetterAfterMaxDeliveries(advisory) }
        }
    }

    /// Moves the event an advisory names to the dead-letter subject: its ack wait expired on the
    /// last attempt, so no handler settled it. Failures are logged; the advisory is not retried
    /// (the event stays in the stream).
    private func deadLetterAfterMaxDeliveries(_ advisory: NATSMessage) async {
        struct Advisory: Decodable {
            var stream_seq: UInt64
            var deliveries: UInt64
            var consumer: String
        }
        guard let facts = try? JSONDecoder().decode(Advisory.self, from: Data(advisory.payload.bytes)) else {
            logger.warning("unreadable max-deliveries advisory", metadata: ["subject": "\(advisory.subject)"])
            return
        }
        guard let subscription = subscriptions().first(where: { $0.consumerName == facts.consumer }) else { return }
        let options = subscription.options
        do {
            let ready = try await ready()
            let stored = try await ready.jetStream.message(stream: configuration.streamName, sequence: facts.stream_seq)
            let subject = busSubject(fromNATS: stored.subject, prefix: configuration.subjectPrefix)
            let event = CloudEventsNATSBinding.event(subject: subject, headers: stored.headers, payload: stored.payload.bytes)
            let deadLetter = DeadLetter.event(
                from: event, deadLetterSubject: options.deadLetterSubject(forOriginalSubject: subject),
                attempts: Int(facts.deliveries),
                error: "ack wait of \(options.ackWait) expired on attempt \(facts.deliveries), the last of \(options.maxDeliver ?? Int(facts.deliveries))",
                sequence: facts.stream_seq, group: options.group)
            let receipt = try await publish(deadLetter, messageID: "deadletter-\(facts.consumer)-\(facts.stream_seq)")
            // A duplicate: another member (or process) dead-lettered it already and counted it.
            if !receipt.duplicate { subscription.telemetry?.deadLettered() }
        } catch {
            logger.error(
                "could not dead-letter an event that reached its max deliveries",
                metadata: ["sequence": "\(facts.stream_seq)", "consumer": "\(facts.consumer)", "error": "\(error)"])
        }
    }
}
