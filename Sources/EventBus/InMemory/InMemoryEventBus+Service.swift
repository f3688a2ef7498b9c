public import ServiceLifecycle

extension InMemoryEventBus: Service {
    /// Holds the bus until graceful shutdown or cancellation, then closes this client, so that
    /// the in-memory bus goes into a `ServiceGroup` exactly where a JetStream bus would. Nothing
    /// runs in the background meanwhile: the in-memory bus needs no `run()` to work.
    public func run() async throws {
        try? await gracefulShutdown()
        await close()
    }
}
