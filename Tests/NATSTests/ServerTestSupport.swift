import Logging
import NATS
import NATSTestSupport
import Testing

/// Connects to a test server with settings that make tests quick: short reconnect waits,
/// unlimited attempts, and the given tweaks.
func connect(
    to server: NATSServerProcess,
    name: String = "test",
    _ adjust: (inout NATSConnectionConfiguration) -> Void = { _ in }
) async throws -> NATSConnection {
    var configuration = try NATSConnectionConfiguration(servers: [server.url])
    configuration.name = name
    configuration.reconnect.wait = .milliseconds(100)
    configuration.reconnect.jitter = .milliseconds(10)
    configuration.reconnect.maxAttempts = .unlimited
    adjust(&configuration)
    var logger = Logger(label: "test.\(name)")
    logger.logLevel = .notice
    return try await NATSConnection.connect(configuration: configuration, logger: logger)
}

/// Collects a connection's events in the background.
final class EventRecorder: Sendable {
    let events = Collected<NATSConnectionEvent>()
    private let task: Task<Void, Never>

    init(_ connection: NATSConnection) async {
        let stream = connection.events
        let events = self.events
        task = Task {
            for await event in stream { events.append(event) }
        }
    }

    deinit { task.cancel() }

    func waitFor(_ timeout: Duration = .seconds(15), _ predicate: @escaping (NATSConnectionEvent) -> Bool) async -> Bool {
        await eventually(timeout: timeout) { events.values.contains(where: predicate) }
    }
}

/// Receives messages from a subscription in the background until `count` arrived or it ended.
final class Receiver: Sendable {
    let messages = Collected<NATSMessage>()
    let task: Task<Void, any Error>
    let subject: String

    init(_ subscription: NATSSubscription, delay: Duration? = nil) {
        subject = subscription.subject
        let messages = self.messages
        task = Task {
            for try await message in subscription {
                messages.append(message)
                if let delay { try await Task.sleep(for: delay) }
            }
        }
    }

    func waitForCount(_ count: Int, timeout: Duration = .seconds(20)) async -> Bool {
        await eventually(timeout: timeout) { messages.count >= count }
    }

    /// Waits for the iteration to end by itself; past `timeout`, cancels it and throws.
    func waitUntilFinished(timeout: Duration = .seconds(20)) async throws {
        let task = self.task
        try await withDeadline(timeout, "the end of the iteration over '\(subject)'", onTimeout: { task.cancel() }) {
            try await task.value
        }
    }
}

extension Tag {
    /// Tests that start a real nats-server.
    @Tag static var server: Self
}
