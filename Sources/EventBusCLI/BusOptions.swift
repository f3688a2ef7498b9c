import ArgumentParser
import EventBus
import EventBusBootstrap
import EventBusJetStream
import Foundation
import Logging
import NATS

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// The options every command takes: where the bus is, how to log, how to print.
struct BusOptions: ParsableArguments {
    @Option(
        name: [.short, .long],
        help: ArgumentHelp(
            "NATS server URLs, comma-separated (overrides EVENT_BUS_NATS_SERVERS; selects the jetstream backend when EVENT_BUS_BACKEND is not set).",
            valueName: "url"))
    var server: String?

    @Option(
        help: ArgumentHelp(
            "NATS credentials file (overrides the authentication of the EVENT_BUS_NATS_* variables; selects the jetstream backend when EVENT_BUS_BACKEND is not set).",
            valueName: "file"))
    var creds: String?

    @Flag(help: "Print one JSON object per line instead of text (errors too, on standard error).")
    var json = false

    @Option(help: "Log level (on standard error).")
    var logLevel: Logger.Level = .warning

    var output: Output { Output(json: json) }

    func logger() -> Logger {
        var logger = Logger(label: "eventbus-cli")
        logger.logLevel = logLevel
        return logger
    }

    /// The `EVENT_BUS_*` settings, with `--server` and `--creds` applied.
    ///
    /// - Throws: ``CLIError`` `.configuration` naming the variable or flag and the rule.
    func settings() throws -> EventBusSettings {
        var environment = ProcessInfo.processInfo.environment
        let flag = server != nil ? "--server" : creds != nil ? "--creds" : nil
        if let flag {
            switch environment["EVENT_BUS_BACKEND"] {
            case nil: environment["EVENT_BUS_BACKEND"] = "jetstream"
            case "memory": throw CLIError(.usage, "\(flag) needs the jetstream backend, but EVENT_BUS_BACKEND is memory", code: "usage")
            default: break
            }
        }
        var settings: EventBusSettings
        do {
            settings = try EventBusSettings.fromEnvironment(environment)
        } catch {
            throw CLIError(.configuration, CLIError(classifying: error).message, code: "configuration")
        }
        guard let flag else { return settings }
        if let creds, !FileManager.default.isReadableFile(atPath: creds) {
            throw CLIError(.configuration, "--creds: cannot read the credentials file '\(creds)'", code: "configuration")
        }
        var connection = settings.jetStream.connection
        do throws(NATSError) {
            if let server {
                connection.servers = try NATSServerURL.parseList(server)
            }
            if let creds {
                connection.authentication = .credentialsFile(path: creds)
            }
            // The same rules as the variables: one authentication, URLs and settings agreeing.
            try connection.validate()
        } catch {
            throw CLIError(.configuration, "\(flag): \(error.message)", code: "configuration")
        }
        settings.jetStream.connection = connection
        return settings
    }

    /// Runs `body` with the configured bus, both in one `ServiceGroup`: SIGTERM or SIGINT stops
    /// `body` first (a subscription hands back what it holds), then the bus drains and closes.
    func withBus<Value: Sendable>(_ body: @escaping @Sendable (any EventBus) async throws -> Value) async throws -> Value {
        try await EventBusFactory.withEventBus(settings: settings(), logger: logger(), body)
    }

    /// ``withBus(_:)`` for a command whose effect must outlive it (`publish`, `subscribe`,
    /// `request`): refused on the in-memory backend, which lives and dies with this process, so
    /// that an unset `EVENT_BUS_BACKEND` does not "publish" to nobody and exit 0.
    func withSharedBus<Value: Sendable>(
        _ command: String, allowMemory: Bool, _ body: @escaping @Sendable (any EventBus) async throws -> Value
    ) async throws -> Value {
        let settings = try settings()
        if settings.backend == .memory && !allowMemory {
            throw ValidationError(
                "eventbus \(command) needs a bus other processes share, but EVENT_BUS_BACKEND is memory\(ProcessInfo.processInfo.environment["EVENT_BUS_BACKEND"] == nil ? " (the default when it is not set)" : ""): an in-memory bus lives and dies with this command, so no other process would see anything. Set EVENT_BUS_BACKEND=jetstream and EVENT_BUS_NATS_SERVERS (or pass --server), or pass --allow-memory to use a throwaway in-memory bus."
            )
        }
        return try await EventBusFactory.withEventBus(settings: settings, logger: logger(), body)
    }

    /// A plain NATS connection from the same settings (JetStream commands).
    func jetStream() async throws -> (NATSConnection, NATSJetStream, EventBusSettings) {
        let settings = try settings()
        guard settings.backend == .jetstream else {
            throw ValidationError(
                "this command needs EVENT_BUS_BACKEND=jetstream or --server (the in-memory bus lives inside one process and has no streams)")
        }
        let connection = try await NATSConnection.connect(configuration: settings.jetStream.connection, logger: logger())
        return (connection, connection.jetStream(), settings)
    }

    /// Runs `body` with a JetStream context on a plain connection, and closes the connection
    /// whether `body` returns or throws.
    func withJetStream<Value>(
        _ body: (NATSJetStream, EventBusSettings) async throws -> Value
    ) async throws -> Value {
        let (connection, jetStream, settings) = try await jetStream()
        do {
            let value = try await body(jetStream, settings)
            await connection.close()
            return value
        } catch {
            await connection.close()
            throw error
        }
    }
}
