public import EventBus
import EventBusJetStream
public import Logging
public import ServiceLifecycle

/// Makes the `EventBus` the settings ask for: the one place that switches on the backend.
public enum EventBusFactory {
    /// Creates the bus and, for JetStream, connects and ensures the stream, so that an unreachable
    /// server or a rejected stream configuration fails here, at start, with the server URLs
    /// (credentials redacted) and the reason.
    ///
    /// Logs the effective configuration once, at info level, as one line whose metadata is
    /// ``EventBusSettings/startupReport`` (secrets redacted).
    ///
    /// The bus is also a `Service`: put it in the application's `ServiceGroup` (before the
    /// services that use it, so that it shuts down after them). Its `run()` owns the backend's
    /// background work, and on graceful shutdown it closes the bus: subscriptions end and hand
    /// back what they hold, publishes in flight get their outcome, the connection drains.
    /// ``withEventBus(settings:logger:gracefulShutdownSignals:observability:_:)`` does all of that for a
    /// program whose work is one closure.
    public static func makeEventBus(
        settings: EventBusSettings,
        logger: Logger = Logger(label: "eventbus"),
        observability: EventBusObservability = .bootstrapped
    ) async throws -> any EventBus & Service {
        // Once per bus, before anything can fail: what the service runs with, secrets redacted.
        logger.info("event bus configuration", metadata: settings.startupReport)
        switch settings.backend {
        case .memory:
            return try InMemoryEventBus(logger: logger, observability: observability)
        case .jetstream:
            let bus = JetStreamEventBus(configuration: settings.jetStream, logger: logger, observability: observability)
            try await bus.start()
            return bus
        }
    }

    /// Reads `EVENT_BUS_*` from the environment and makes the bus.
    public static func makeEventBusFromEnvironment(logger: Logger = Logger(label: "eventbus")) async throws -> any EventBus & Service {
        try await makeEventBus(settings: EventBusSettings.fromEnvironment(), logger: logger)
    }
}
