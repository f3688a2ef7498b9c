import ServiceLifecycle

extension NATSConnection: Service {
    /// Connects (if ``connect()`` was not called yet) and keeps the connection open until it
    /// closes. On graceful shutdown it drains (finishing in-flight messages and flushing
    /// publishes); when the task is cancelled it closes at once. Returns when the connection is
    /// closed.
    public func run() async throws {
        if core.phase == .idle {
            try await connect()
        }
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                await core.waitUntilClosed()
            } onCancel: {
                closeInBackground()
            }
        } onGracefulShutdown: {
            self.drainInBackground()
        }
    }

    /// Starts draining without waiting (for the graceful-shutdown handler, which cannot await).
    func drainInBackground() {
        blocking.submit { [self] in
            guard let native = try? connected() else { return }
            let start = core.state.withLock { state -> Bool in
                state.closingRequested = true
                guard state.phase == .connected else { return false }
                state.phase = .draining
                return true
            }
            if start { try? native.startDrain(timeoutMilliseconds: 30_000) }
        }
    }
}
