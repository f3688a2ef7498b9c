extension EventBus {
    /// Publishes the events one after another: the default for backends without a faster way.
    ///
    /// The rules every implementation follows:
    /// - Every event is validated first; an invalid one throws (`invalidEvent`, `invalidSubject`)
    ///   before anything is published.
    /// - Each event then ends with one outcome: stored (a receipt, `duplicate` when its id was
    ///   stored before) or not known to be stored (an ``EventBusError``; retriable ones may be
    ///   published again with the same event, which its id keeps from being stored twice).
    /// - A failure does not stop the rest of the batch. If any event failed, the call throws an
    ///   ``EventBusError`` whose ``EventBusError/batchOutcomes`` holds every event's outcome, so
    ///   that exactly the failed ones can be published again.
    /// - A cancelled task stops publishing: events not yet sent fail as not sent (retriable).
    @discardableResult
    public func publish(contentsOf events: [Event]) async throws -> [PublishReceipt] {
        for event in events { try event.validateForPublish() }
        let outcomes = await EventBusError.eachOfBatch(events) { event throws(EventBusError) in
            do {
                return try await publish(event)
            } catch {
                throw EventBusError.batchFailure(error, of: event)
            }
        }
        return try EventBusError.receipts(from: outcomes)
    }
}

extension EventBusError {
    /// Runs `step` for each event of a batch in order, going on after a failure; once the task is
    /// cancelled, the remaining events fail as not sent. Every backend's batch loop.
    package static func eachOfBatch<Value>(
        _ events: [Event], _ step: (Event) async throws(EventBusError) -> Value
    ) async -> [Result<Value, EventBusError>] {
        var outcomes: [Result<Value, EventBusError>] = []
        outcomes.reserveCapacity(events.count)
        for event in events {
            if Task.isCancelled {
                outcomes.append(.failure(notSentBecauseCancelled(event)))
                continue
            }
            do throws(EventBusError) {
                outcomes.append(.success(try await step(event)))
            } catch {
                outcomes.append(.failure(error))
            }
        }
        return outcomes
    }

    /// A batch event's failure as an ``EventBusError``: an `EventBusError` as it is, a
    /// cancellation as "not sent", anything else as `publishFailed`.
    package static func batchFailure(_ error: any Error, of event: Event) -> EventBusError {
        switch error {
        case let error as EventBusError: error
        case is CancellationError: notSentBecauseCancelled(event)
        default: EventBusError(.publishFailed, "publishing '\(event.subject)': \(error)", underlying: error)
        }
    }

    /// The outcome of a batch event that was not sent because the publishing task was cancelled.
    package static func notSentBecauseCancelled(_ event: Event) -> EventBusError {
        EventBusError(.publishFailed, "event '\(event.id)' to '\(event.subject)' was not sent: the task was cancelled", isRetriable: true)
    }

    /// The receipts of a batch in which every event was stored, or the error that lists every
    /// outcome (its code is the first failure's).
    package static func receipts(from outcomes: [Result<PublishReceipt, EventBusError>]) throws(EventBusError) -> [PublishReceipt] {
        var receipts: [PublishReceipt] = []
        receipts.reserveCapacity(outcomes.count)
        var firstFailure: EventBusError?
        var failures = 0
        for outcome in outcomes {
            switch outcome {
            case .success(let receipt): receipts.append(receipt)
            case .failure(let error):
                failures += 1
                if firstFailure == nil { firstFailure = error }
            }
        }
        guard let firstFailure else { return receipts }
        var error = EventBusError(
            firstFailure.code,
            "\(failures) of \(outcomes.count) events of the batch are not known to be stored (batchOutcomes lists each); the first: \(firstFailure.message)",
            isRetriable: outcomes.allSatisfy { if case .failure(let error) = $0 { error.isRetriable } else { true } },
            underlying: firstFailure)
        error.batchOutcomes = outcomes
        throw error
    }
}
