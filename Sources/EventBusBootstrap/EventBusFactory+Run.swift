public import EventBus
public import Logging
import ServiceLifecycle
import Synchronization
public import UnixSignals

extension EventBusFactory {
    /// Makes the bus the settings ask for and runs `body` with it, both in one `ServiceGroup`
    /// that shuts down gracefully on `gracefulShutdownSignals` (SIGTERM and SIGINT by default).
    ///
    /// ```swift
    /// try await EventBusFactory.withEventBus(settings: .fromEnvironment(), logger: logger) { bus in
    ///     try await BillingService(bus: bus).run()
    /// }
    /// ```
    ///
    /// Shutdown goes in order: on a signal, `body`'s task is cancelled first (its subscriptions end
    /// and hand back the events they hold to the group's other members), then the bus closes
    /// (publishes in flight get their outcome, the connection drains). When `body` returns or
    /// throws, the bus is closed the same way, and its result or error is returned here.
    ///
    /// - Throws: what ``makeEventBus(settings:logger:observability:)`` throws, what `body` throws, or
    ///   `CancellationError` when a signal ended `body` by cancelling it.
    public static func withEventBus<Value: Sendable>(
        settings: EventBusSettings,
        logger: Logger = Logger(label: "eventbus"),
        gracefulShutdownSignals: [UnixSignal] = [.sigterm, .sigint],
        observability: EventBusObservability = .bootstrapped,
        _ body: @escaping @Sendable (any EventBus) async throws -> Value
    ) async throws -> Value {
        let bus = try await makeEventBus(settings: settings, logger: logger, observability: observability)
        let outcome = Mutex<Result<Value, any Error>?>(nil)
        let work = ClosureService {
            let result: Result<Value, any Error>
            do {
                result = .success(try await cancelWhenGracefulShutdown { try await body(bus) })
            } catch {
                result = .failure(error)
            }
            outcome.withLock { $0 = result }
        }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    // The bus first: a graceful shutdown goes in reverse order, so the work stops
                    // before the bus it uses.
                    .init(service: bus, successTerminationBehavior: .gracefullyShutdownGroup),
                    .init(service: work, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "eventbus-work"),
                ],
                gracefulShutdownSignals: gracefulShutdownSignals,
                logger: logger))
        do {
            try await group.run()
        } catch {
            // The work's own outcome says more than the group's; without one, this is all there is.
            guard outcome.withLock({ $0 }) != nil else { throw error }
        }
        guard let result = outcome.withLock({ $0 }) else { throw CancellationError() }
        return try result.get()
    }
}

/// A `Service` that runs a closure once.
private struct ClosureService: Service {
    let body: @Sendable () async -> Void

    init(_ body: @escaping @Sendable () async -> Void) {
        self.body = body
    }

    func run() async throws {
        await body()
    }
}
