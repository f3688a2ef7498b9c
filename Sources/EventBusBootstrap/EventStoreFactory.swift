public import EventBus
public import EventBusJetStream
public import Logging
import NATS

/// Opens the `EventStore` that goes with the bus the settings ask for: the same backend switch
/// (`EVENT_BUS_BACKEND`), the same servers and credentials.
public enum EventStoreFactory {
    /// Opens the store, runs `body` with it, then closes it.
    ///
    /// - `memory`: an `InMemoryEventStore` (this process only, like the in-memory bus).
    /// - `jetstream`: a `JetStreamEventStore` on a connection of its own, made from the bus's connection
    ///   settings. Without `configuration`, its stream and bucket get the bus's replicas and storage;
    ///   a `configuration` given is used as it is (set its `replicas` and `storage` too). The connection
    ///   is closed after `body`.
    ///
    /// ```swift
    /// try await EventStoreFactory.withEventStore(settings: .fromEnvironment()) { store in
    ///     try await OrderHistory(store: store).run()
    /// }
    /// ```
    ///
    /// - Throws: a NATS error when the servers cannot be reached, an `EventStoreError` when the stream
    ///   or bucket cannot be opened, or what `body` throws.
    public static func withEventStore<Value: Sendable>(
        settings: EventBusSettings,
        configuration: JetStreamEventStore.Configuration? = nil,
        logger: Logger = Logger(label: "eventstore"),
        _ body: @Sendable (any EventStore) async throws -> Value
    ) async throws -> Value {
        switch settings.backend {
        case .memory:
            let store = InMemoryEventStore()
            do {
                let value = try await body(store)
                await store.close()
                return value
            } catch {
                await store.close()
                throw error
            }
        case .jetstream:
            let storeConfiguration = configuration ?? {
                var defaults = JetStreamEventStore.Configuration()
                defaults.replicas = settings.jetStream.replicas
                defaults.storage = settings.jetStream.storage
                return defaults
            }()
            let connection = try await NATSConnection.connect(configuration: settings.jetStream.connection, logger: logger)
            do {
                let store = try await JetStreamEventStore.open(on: connection, configuration: storeConfiguration, logger: logger)
                let value: Value
                do {
                    value = try await body(store)
                } catch {
                    await store.close()
                    throw error
                }
                await store.close()
                await connection.close()
                return value
            } catch {
                await connection.close()
                throw error
            }
        }
    }
}
