#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The dead letters of an ``InMemoryEventBus``: entries of its retained log, so they last as long
/// as the log's limits keep them. Times are the broker's clock read as wall-clock dates.
struct InMemoryDeadLetterQueue: DeadLetterQueue {
    let broker: InMemoryBroker
    let client: ClientID

    private func wallClock() -> BrokerState.WallClock {
        BrokerState.WallClock(now: broker.clock.now, date: Date())
    }

    func list(_ filter: DeadLetterFilter, limit: Int) async throws -> [DeadLetterEntry] {
        try filter.validate()
        try Self.validate(limit: limit)
        let clock = wallClock()
        return broker.state.withLock { $0.deadLetters(matching: filter, limit: limit, clock: clock) }
    }

    func inspect(sequence: UInt64) async throws -> DeadLetterRecord {
        let clock = wallClock()
        return try broker.state.withLock { (state) throws(EventBusError) in try state.deadLetter(at: sequence, clock: clock) }
    }

    func requeue(sequence: UInt64, options: DeadLetterRequeueOptions) async throws -> DeadLetterRequeueOutcome {
        let clock = wallClock()
        let (outcome, event) = try broker.withState { (state, _, effects) throws(EventBusError) in
            try state.requeueDeadLetter(at: sequence, options: options, from: client, clock: clock, effects: &effects)
        }
        if !outcome.receipt.duplicate {
            broker.logger.info(
                "requeued a dead letter",
                metadata: ["sequence": "\(sequence)", "subject": "\(event.subject)", "id": "\(event.id)"])
        }
        return outcome
    }

    func remove(sequence: UInt64) async throws -> Bool {
        try broker.withState { (state, _, effects) throws(EventBusError) in
            try state.removeDeadLetter(at: sequence, effects: &effects)
        }
    }

    func purge(_ filter: DeadLetterFilter) async throws -> Int {
        try filter.validate()
        let clock = wallClock()
        return broker.withState { state, _, effects in
            state.purgeDeadLetters(matching: filter, clock: clock, effects: &effects)
        }
    }

    static func validate(limit: Int) throws(EventBusError) {
        guard (1...DeadLetterQueueLimits.maxPageSize).contains(limit) else {
            throw EventBusError(.invalidOption, "dead-letter page limit \(limit) must be in 1...\(DeadLetterQueueLimits.maxPageSize)")
        }
    }
}

extension InMemoryEventBus {
    /// The dead letters in this bus's log (shared by every client of the broker); requeues are
    /// published by this client.
    public func deadLetterQueue() throws(EventBusError) -> any DeadLetterQueue {
        InMemoryDeadLetterQueue(broker: broker, client: client)
    }
}
