import Synchronization

/// The one reply a requester waits for: the first `resolve` or `fail` wins, whether it comes before or
/// after the requester starts waiting.
final class ReplyBox: Sendable {
    private enum State {
        case open
        case waiting(UnsafeContinuation<Result<Event, EventBusError>, Never>)
        case finished(Result<Event, EventBusError>)
        case consumed
    }

    private let state = Mutex<State>(.open)

    /// Delivers the reply; returns `false` if the box was already resolved or failed.
    @discardableResult
    func resolve(_ reply: Event) -> Bool {
        finish(.success(reply))
    }

    /// Ends the wait with `error`; returns `false` if the box was already resolved or failed.
    @discardableResult
    func fail(_ error: EventBusError) -> Bool {
        finish(.failure(error))
    }

    private func finish(_ result: Result<Event, EventBusError>) -> Bool {
        let (accepted, waiter): (Bool, UnsafeContinuation<Result<Event, EventBusError>, Never>?) = state.withLock { state in
            switch state {
            case .open:
                state = .finished(result)
                return (true, nil)
            case .waiting(let continuation):
                state = .consumed
                return (true, continuation)
            case .finished, .consumed:
                return (false, nil)
            }
        }
        waiter?.resume(returning: result)
        return accepted
    }

    /// Waits for the reply or the failure. Cancelling the waiting task fails the box with `closed`.
    func wait() async -> Result<Event, EventBusError> {
        await withTaskCancellationHandler {
            await withUnsafeContinuation { continuation in
                let ready: Result<Event, EventBusError>? = state.withLock { state in
                    switch state {
                    case .open:
                        state = .waiting(continuation)
                        return nil
                    case .finished(let result):
                        state = .consumed
                        return result
                    case .waiting, .consumed:
                        return .failure(EventBusError(.closed, "a reply can be awaited only once"))
                    }
                }
                if let ready {
                    continuation.resume(returning: ready)
                }
            }
        } onCancel: {
            fail(EventBusError(.closed, "the request was cancelled"))
        }
    }
}
