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
        switch core.transition({ $0.drainRequested() }) {
        case .none, .wait:
            return
        case .finish(let finish):
            core.finish(finish)
        case .startDrain:
            blocking.submit { [self] in
                do throws(NATSError) {
                    try native.startDrain(timeoutMilliseconds: 30_000)
                } catch where error.code == .connectionClosed || error.code == .connectionDraining {
                    // Already closing.
                } catch {
                    if case .closeNative = core.transition({ $0.drainFailed() }) { native.close() }
                }
            }
        }
    }
}
