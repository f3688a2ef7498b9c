import ArgumentParser
import EventBus
import EventBusBootstrap
import EventBusJetStream
import Foundation
import Logging
import NATS

/// `eventbus`: publish, subscribe and request from the command line, inspect the JetStream stream
/// and consumers, check a deployment, and measure publish rates. It reads the same `EVENT_BUS_*`
/// variables as a service (docs/configuration.md).
@main
struct EventBusCLI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eventbus",
        abstract: "Publish, subscribe, request, inspect and check the event bus configured by EVENT_BUS_* variables.",
        subcommands: [Publish.self, Subscribe.self, Request.self, StreamInfo.self, ConsumerInfo.self, DeadLetterCommand.self, Doctor.self, Bench.self])

    /// Runs the command like `AsyncParsableCommand.main()`, except that an error the command
    /// throws is printed escaped: its text may quote a server's answer or an event.
    static func main() async {
        LoggingSystem.bootstrap(TerminalSafeLogHandler.init)
        var command: any ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            exit(withError: error)
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: terminalSafe(error))
        }
    }
}

/// Text from the wire or a server, ready for the terminal (see `TerminalText`).
func shown(_ value: some CustomStringConvertible) -> String {
    TerminalText.escaped(value.description)
}

/// An error whose printed text has been escaped for the terminal.
struct EscapedError: Error, CustomStringConvertible {
    let description: String
}

/// `error` with its text escaped; ArgumentParser's own exits and their codes are kept.
func terminalSafe(_ error: any Error) -> any Error {
    switch error {
    case is ExitCode, is CleanExit: error
    case let error as ValidationError: ValidationError(shown(error.message))
    default: EscapedError(description: shown(String(describing: error)))
    }
}

struct BusOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "warning"

    func logger() -> Logger {
        var logger = Logger(label: "eventbus-cli")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .warning
        return logger
    }

    func settings() throws -> EventBusSettings { try EventBusSettings.fromEnvironment() }

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
                "eventbus \(command) needs a bus other processes share, but EVENT_BUS_BACKEND is memory\(ProcessInfo.processInfo.environment["EVENT_BUS_BACKEND"] == nil ? " (the default when it is not set)" : ""): an in-memory bus lives and dies with this command, so no other process would see anything. Set EVENT_BUS_BACKEND=jetstream and EVENT_BUS_NATS_SERVERS, or pass --allow-memory to use a throwaway in-memory bus."
            )
        }
        return try await EventBusFactory.withEventBus(settings: settings, logger: logger(), body)
    }

    /// A plain NATS connection from the same settings (JetStream commands).
    func jetStream() async throws -> (NATSConnection, NATSJetStream, EventBusSettings) {
        let settings = try settings()
        guard settings.backend == .jetstream else {
            throw ValidationError("this command needs EVENT_BUS_BACKEND=jetstream (the in-memory bus lives inside one process)")
        }
        let connection = try await NATSConnection.connect(configuration: settings.jetStream.connection, logger: logger())
        return (connection, connection.jetStream(), settings)
    }
}

/// One line per delivery. Every attribute and the payload are the publisher's, so each is escaped:
/// a newline in the payload is shown as `\n` and cannot start a line that looks like another event.
func render(_ delivery: Delivery) -> String {
    let event = delivery.event
    let text = String(decoding: event.data, as: UTF8.self)
    var line = "#\(delivery.sequence) \(shown(event.subject)) id=\(shown(event.id)) type=\(shown(event.type)) source=\(shown(event.source)) attempt=\(delivery.deliveryCount)"
    if !event.extensions.isEmpty {
        line += " extensions=\(event.extensions.sorted { $0.key < $1.key }.map { "\(shown($0.key))=\(shown($0.value))" }.joined(separator: ","))"
    }
    return line + " data=\(shown(text))"
}

extension EventBusCLI {
    struct Publish: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Publish one event and print its receipt.")
        @OptionGroup var bus: BusOptions
        @Argument(help: "The event subject, e.g. orders.created.") var subject: String
        @Argument(help: "The payload (text).") var data: String = ""
        @Option(help: "CloudEvents type.") var type = "com.example.cli"
        @Option(help: "CloudEvents source.") var source = "/eventbus-cli"
        @Option(help: "Event id (default: a new one); publishing an id twice inside the duplicate window stores it once.") var id: String?
        @Option(help: "Content type of the payload.") var contentType = "text/plain"
        @Flag(help: "Allow the in-memory backend (EVENT_BUS_BACKEND=memory), whose events die with this command.") var allowMemory = false

        func run() async throws {
            var event = Event(subject: subject, type: type, source: source, dataContentType: contentType, data: Array(data.utf8))
            if let id { event.id = id }
            let receipt = try await bus.withSharedBus("publish", allowMemory: allowMemory) { [event] eventBus in try await eventBus.publish(event) }
            print("published \(shown(event.id)) to \(shown(subject)): stream \(shown(receipt.stream)) sequence \(receipt.sequence)\(receipt.duplicate ? " (duplicate, not stored again)" : "")")
        }
    }

    struct Subscribe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print events on a pattern (and ack them).")
        @OptionGroup var bus: BusOptions
        @Argument(help: "Subject pattern: * one token, > the rest.") var pattern: String
        @Option(help: "Join this group (durable on JetStream).") var group: String?
        @Flag(help: "Start with every retained event instead of new ones (for a new group or a subscriber without group).") var all = false
        @Option(help: "Stop after this many events; 0 for no limit.") var count = 0
        @Flag(help: "Allow the in-memory backend (EVENT_BUS_BACKEND=memory), whose events die with this command.") var allowMemory = false

        func run() async throws {
            let (pattern, options, count) = (self.pattern, SubscriptionOptions(group: group, start: all ? .all : .new), self.count)
            try await bus.withSharedBus("subscribe", allowMemory: allowMemory) { eventBus in
                let subscription = try await eventBus.subscribe(pattern, options: options)
                var seen = 0
                // Ends on the count, or when a signal cancels this task.
                for try await delivery in subscription {
                    print(render(delivery) + (delivery.isRequest ? " (request, not answered)" : ""))
                    fflush(nil)  // each event at once, also into a pipe
                    try await delivery.ack()
                    seen += 1
                    if count > 0 && seen >= count { break }
                }
                // Hands back at once whatever the subscription fetched beyond the count.
                await subscription.close()
            }
        }
    }

    struct Request: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Send a request and print the reply.")
        @OptionGroup var bus: BusOptions
        @Argument(help: "The request subject.") var subject: String
        @Argument(help: "The payload (text).") var data: String = ""
        @Option(help: "Seconds to wait for the reply.") var timeout = 5
        @Flag(help: "Allow the in-memory backend (EVENT_BUS_BACKEND=memory), whose events die with this command.") var allowMemory = false

        func run() async throws {
            let request = Event(subject: subject, type: "com.example.cli.request", source: "/eventbus-cli", data: Array(data.utf8))
            let timeout = Duration.seconds(self.timeout)
            let reply = try await bus.withSharedBus("request", allowMemory: allowMemory) { eventBus in try await eventBus.request(request, timeout: timeout) }
            print("reply \(shown(reply.id)) type=\(shown(reply.type)) data=\(shown(String(decoding: reply.data, as: UTF8.self)))")
        }
    }

    struct StreamInfo: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "stream-info", abstract: "Show the bus's JetStream stream.")
        @OptionGroup var bus: BusOptions

        func run() async throws {
            let (connection, jetStream, settings) = try await bus.jetStream()
            let info = try await jetStream.streamInfo(settings.jetStream.streamName)
            let config = info.configuration
            print("""
                stream      \(shown(config.name))
                subjects    \(shown(config.subjects.joined(separator: ", ")))
                storage     \(config.storage.rawValue), replicas \(config.replicas), retention \(config.retention.rawValue)
                max age     \(config.maxAge == .zero ? "unlimited" : "\(config.maxAge)"), duplicate window \(config.duplicateWindow)
                messages    \(info.state.messages) (\(info.state.bytes) bytes), sequences \(info.state.firstSequence)...\(info.state.lastSequence)
                consumers   \(info.state.consumerCount)
                """)
            await connection.close()
        }
    }

    struct ConsumerInfo: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "consumer-info", abstract: "Show a consumer (a group is named <group>-<hash>; see stream-info).")
        @OptionGroup var bus: BusOptions
        @Argument(help: "The consumer name.") var name: String

        func run() async throws {
            let (connection, jetStream, settings) = try await bus.jetStream()
            let info = try await jetStream.consumerInfo(stream: settings.jetStream.streamName, name: name)
            print("""
                consumer     \(shown(info.name)) on \(shown(info.stream))
                filter       \(shown(info.configuration.filterSubjects.joined(separator: ", ")))
                ack wait     \(info.configuration.ackWait), max deliver \(info.configuration.maxDeliver), max ack pending \(info.configuration.maxAckPending)
                delivered    stream sequence \(info.delivered.streamSequence), ack floor \(info.ackFloor.streamSequence)
                pending      \(info.pendingCount) not yet delivered, \(info.ackPendingCount) awaiting ack, \(info.redeliveredCount) redelivered
                """)
            await connection.close()
        }
    }

    struct Doctor: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check the configuration, the servers, JetStream and the stream; exit non-zero on a problem.")
        @OptionGroup var bus: BusOptions

        func run() async throws {
            var problems = 0
            func check(_ what: String, _ body: () async throws -> String) async {
                do {
                    print("ok    \(shown(what)): \(shown(try await body()))")
                } catch {
                    problems += 1
                    print("FAIL  \(shown(what)): \(shown("\(error)"))")
                }
            }
            let settings: EventBusSettings
            do {
                settings = try bus.settings()
                print("ok    configuration: \(shown(settings))")
            } catch {
                print("FAIL  configuration: \(shown("\(error)"))")
                throw ExitCode(1)
            }
            guard settings.backend == .jetstream else {
                print("ok    backend memory: nothing to reach")
                return
            }
            var connection: NATSConnection?
            await check("connect") {
                let started = ContinuousClock.now
                let connected = try await NATSConnection.connect(configuration: settings.jetStream.connection, logger: bus.logger())
                connection = connected
                return "\(connected.connectedServer ?? "?") in \(ContinuousClock.now - started), max payload \(connected.maxPayload) bytes"
            }
            guard let connection else { throw ExitCode(1) }
            await check("round trip") {
                let started = ContinuousClock.now
                try await connection.flush()
                return "\(ContinuousClock.now - started)"
            }
            let jetStream = connection.jetStream()
            var notes: [String] = []
            await check("stream \(settings.jetStream.streamName)") {
                let info = try await jetStream.streamInfo(settings.jetStream.streamName)
                // The same check the bus makes at start: a stream it cannot use fails the doctor;
                // a difference it works with is reported and does not.
                let policy = settings.jetStream.streamUpdatePolicy
                let streamCheck = JetStreamEventBus.StreamCheck(stream: info.configuration, configuration: settings.jetStream)
                if !streamCheck.blockingProblems(policy: policy).isEmpty {
                    throw ValidationError(streamCheck.refusal(policy: policy))
                }
                notes = streamCheck.problems.map { "the bus will update \($0.field) at start (stream update policy 'update'): \($0)" }
                notes += streamCheck.differences.map {
                    "\($0) kept as it is\(policy == .update ? " unless the bus's update sets it" : "")"
                }
                let note = streamCheck.differences.isEmpty ? "matches the configuration" : "usable by the bus, \(streamCheck.differences.count) difference(s) kept"
                return "\(info.state.messages) events, \(info.configuration.replicas) replicas, \(note)"
            }
            for note in notes { print("info  stream \(shown(settings.jetStream.streamName)): \(shown(note))") }
            await check("publish") {
                let probe = try await jetStream.publish(
                    subject: "\(settings.jetStream.subjectPrefix).doctor.probe", payload: Array("probe".utf8),
                    options: .init(messageID: "doctor-\(UUID().uuidString)"))
                return "stored at sequence \(probe.sequence)"
            }
            await check("consumers") {
                let names = try await jetStream.consumerNames(stream: settings.jetStream.streamName)
                for name in names {
                    let info = try await jetStream.consumerInfo(stream: settings.jetStream.streamName, name: name)
                    print(
                        "info  consumer \(shown(name)): pending \(info.pendingCount), ack pending \(info.ackPendingCount), redelivered \(info.redeliveredCount), waiting pulls \(info.waitingCount)")
                }
                return "\(names.count) on stream \(settings.jetStream.streamName)"
            }
            await connection.close()
            // The bus's own health, as a readiness probe reads it: a bus that cannot start (no
            // JetStream, an unusable stream) is not ready.
            let eventBus = JetStreamEventBus(configuration: settings.jetStream, logger: bus.logger())
            let startError: (any Error)?
            do {
                try await eventBus.start()
                startError = nil
            } catch {
                startError = error
            }
            let health = await eventBus.health()
            await eventBus.close()
            let summary = "\(health.status), connection \(health.connection)" + (health.server.map { " to \($0)" } ?? "")
                + (startError.map { "; the bus did not start: \($0)" } ?? "")
            print("\(health.isReady ? "ok   " : "FAIL ") health: \(shown(summary))")
            if !health.isReady { problems += 1 }
            if problems > 0 { throw ExitCode(1) }
        }
    }

    struct Bench: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Publish events through the bus and report the rate and latency (a quick check, not the benchmark suite).")
        @OptionGroup var bus: BusOptions
        @Option(help: "How many events.") var count = 10_000
        @Option(help: "Concurrent publishers.") var concurrency = 1
        @Option(help: "Payload bytes.") var size = 128

        func run() async throws {
            let payload = [UInt8](repeating: 0x61, count: size)
            let concurrency = self.concurrency
            let perTask = max(1, count / max(1, concurrency))
            let started = ContinuousClock.now
            let latencies: [Duration] = try await bus.withBus { eventBus in try await withThrowingTaskGroup(of: [Duration].self) { group in
                for task in 0..<concurrency {
                    group.addTask {
                        var samples: [Duration] = []
                        samples.reserveCapacity(perTask)
                        for index in 0..<perTask {
                            let begin = ContinuousClock.now
                            try await eventBus.publish(Event(subject: "bench.cli.\(task)", type: "bench", source: "/eventbus-cli", data: payload, extensions: ["n": "\(index)"]))
                            samples.append(ContinuousClock.now - begin)
                        }
                        return samples
                    }
                }
                var all: [Duration] = []
                for try await samples in group { all += samples }
                return all.sorted()
            } }
            let elapsed = ContinuousClock.now - started
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            print("published \(latencies.count) events of \(size) bytes with \(concurrency) publisher(s) in \(elapsed)")
            print("rate \(Int(Double(latencies.count) / seconds)) events/s; latency p50 \(latencies[latencies.count / 2]), p99 \(latencies[latencies.count * 99 / 100]), max \(latencies.last!)")
        }
    }
}
