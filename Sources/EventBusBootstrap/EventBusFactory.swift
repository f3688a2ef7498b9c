public import EventBus
import EventBusJetStream
public import Logging

/// Makes the ``EventBus`` the settings ask for: the one place that switches on the backend.
public enum EventBusFactory {
    /// Creates the bus and, for JetStream, connects and ensures the stream, so that an unreachable
    /// server or a rejected stream configuration fails here, at start, with the server URLs
    /// (credentials redacted) and the reason.
    public static func makeEventBus(
        settings: EventBusSettings,
        logger: Logger = Logger(label: "eventbus")
    ) async throws -> any EventBus {
        switch settings.backend {
        case .memory:
            logger.info("event bus backend: memory")
            return try InMemoryEventBus(logger: logger)
        case .jetstream:
            let bus = JetStreamEventBus(configuration: settings.jetStream, logger: logger)
            try await bus.start()
            return bus
        }
    }

    /// Reads `EVENT_BUS_*` from the environment and makes the bus.
    public static func makeEventBusFromEnvironment(logger: Logger = Logger(label: "eventbus")) async throws -> any EventBus {
        try await makeEventBus(settings: EventBusSettings.fromEnvironment(), logger: logger)
    }
}
