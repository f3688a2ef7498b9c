import EventBus
import Testing

/// Waits until `condition` holds, polling; returns `false` if `timeout` passed first. Every wait in a check
/// goes through here or another bounded wait, so a broken backend fails a check instead of hanging it.
func waitUntil(
    timeout: Duration,
    poll: Duration = .milliseconds(5),
    _ condition: () -> Bool
) async throws -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while !condition() {
        if clock.now >= deadline {
            return false
        }
        try await Task.sleep(for: poll)
    }
    return true
}

/// Waits until `condition` holds while `progress` keeps rising: returns `false` once `stallTimeout` passes with
/// no rise. For waits whose length depends on the machine's speed (thousands of handlers that sleep), where an
/// overall budget fails a working backend on a loaded machine; a backend that stops delivering still fails
/// within `stallTimeout`, and the check's own time limit bounds the whole wait.
func waitUntil(
    stallTimeout: Duration,
    progress: () -> Int,
    poll: Duration = .milliseconds(5),
    _ condition: () -> Bool
) async throws -> Bool {
    let clock = ContinuousClock()
    var lastProgress = progress()
    var deadline = clock.now + stallTimeout
    while !condition() {
        let now = progress()
        if now > lastProgress {
            lastProgress = now
            deadline = clock.now + stallTimeout
        } else if clock.now >= deadline {
            return false
        }
        try await Task.sleep(for: poll)
    }
    return true
}

/// Runs `body` and fails the check if it does not finish within `timeout`; `onTimeout` should make it finish
/// (close what it waits on), since structured tasks cannot be abandoned.
func withTimeLimit<Result: Sendable>(
    _ timeout: Duration,
    _ what: String,
    sourceLocation: SourceLocation = #_sourceLocation,
    onTimeout: @escaping @Sendable () async -> Void = {},
    _ body: @escaping @Sendable () async throws -> Result
) async throws -> Result {
    try await withThrowingTaskGroup(of: Result?.self, returning: Result.self) { group in
        group.addTask(operation: { try await body() })
        group.addTask(operation: {
            try await Task.sleep(for: timeout)
            return nil
        })
        defer { group.cancelAll() }
        while let next = try await group.next() {
            if let result = next {
                return result
            }
            Issue.record("\(what) did not finish within \(timeout)", sourceLocation: sourceLocation)
            await onTimeout()
            group.cancelAll()
        }
        throw CancellationError()
    }
}

/// Whether `error` is an ``EventBusError`` with `code`.
func isEventBusError(_ error: any Error, _ code: EventBusError.Code) -> Bool {
    (error as? EventBusError)?.code == code
}

/// Runs `body`, expecting it to throw an ``EventBusError`` with `code`; records an issue otherwise.
func expectEventBusError(
    _ code: EventBusError.Code,
    _ what: String,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () async throws -> Void
) async {
    do {
        try await body()
        Issue.record("\(what): expected EventBusError.\(code), but it succeeded", sourceLocation: sourceLocation)
    } catch let error as EventBusError {
        #expect(error.code == code, "\(what): expected .\(code), got \(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("\(what): expected EventBusError.\(code), got \(error)", sourceLocation: sourceLocation)
    }
}
