import ArgumentParser
import EventBus
import EventBusBootstrap
import EventBusJetStream
import Foundation
import NATS

/// A consumer with the subscription of the bus it serves, when the bus made it.
struct BusConsumer {
    var info: NATSConsumerInfo
    var identity: JetStreamEventBus.ConsumerIdentity?

    init(_ info: NATSConsumerInfo, settings: EventBusSettings) {
        self.info = info
        identity = JetStreamEventBus.ConsumerIdentity(consumer: info, configuration: settings.jetStream)
    }

    /// What a person reads in the GROUP column: the group, `(no group)` for a subscriber without
    /// one, `-` for a consumer the bus did not make.
    var groupText: String {
        guard let identity else { return "-" }
        return identity.group.map { shown($0) } ?? "(no group)"
    }

    /// The subscription's pattern, or the raw filter subjects of a consumer the bus did not make.
    var patternText: String {
        identity.map { shown($0.pattern) } ?? shown(info.configuration.filterSubjects.joined(separator: ","))
    }

    var object: JSONObject {
        let config = info.configuration
        return [
            "name": .string(info.name),
            "stream": .string(info.stream),
            "group": .optional(identity?.group),
            "pattern": .optional(identity?.pattern),
            "bus": .bool(identity != nil),
            "durable": .bool(config.durableName != nil),
            "filter_subjects": .strings(config.filterSubjects),
            "ack_wait_ns": .nanoseconds(config.ackWait),
            "max_deliver": .int(config.maxDeliver),
            "max_ack_pending": .int(config.maxAckPending),
            "delivered_stream_sequence": .int(info.delivered.streamSequence),
            "ack_floor_stream_sequence": .int(info.ackFloor.streamSequence),
            "pending": .int(info.pendingCount),
            "ack_pending": .int(info.ackPendingCount),
            "redelivered": .int(info.redeliveredCount),
            "waiting": .int(info.waitingCount),
        ]
    }

    var lines: String {
        let config = info.configuration
        let maxDeliver = config.maxDeliver < 0 ? "unlimited" : "\(config.maxDeliver)"
        return """
            consumer         \(shown(info.name)) on stream \(shown(info.stream))
            group            \(groupText)\(identity == nil ? " (not made by the bus)" : "")
            pattern          \(patternText)
            filter           \(shown(config.filterSubjects.joined(separator: ", ")))
            ack wait         \(Human.duration(config.ackWait)), max deliver \(maxDeliver), max ack pending \(config.maxAckPending)
            delivered        stream sequence \(info.delivered.streamSequence), ack floor \(info.ackFloor.streamSequence)
            pending          \(Human.count(info.pendingCount)) not yet delivered, \(info.ackPendingCount) awaiting ack, \(info.redeliveredCount) redelivered, \(info.waitingCount) waiting pulls
            """
    }
}

/// Every consumer of `stream`, with the bus's subscriptions recognised.
func busConsumers(_ jetStream: NATSJetStream, stream: String, settings: EventBusSettings) async throws -> [BusConsumer] {
    var consumers: [BusConsumer] = []
    for name in try await jetStream.consumerNames(stream: stream) {
        // An ephemeral consumer may go away while the list is read.
        if let info = try await found(await jetStream.consumerInfo(stream: stream, name: name)) {
            consumers.append(BusConsumer(info, settings: settings))
        }
    }
    return consumers
}

/// `consumer info` and its old spelling `consumer-info`: a consumer by its name, or by the
/// group the bus made it for (with `pattern` when the group has several).
func showConsumer(_ bus: BusOptions, _ nameOrGroup: String, pattern: String?, stream: String?) async throws {
    try await bus.withJetStream { jetStream, settings in
        let stream = stream ?? settings.jetStream.streamName
        if let pattern {
            let parsed: SubjectPattern
            do {
                parsed = try SubjectPattern(pattern)
            } catch {
                throw CLIError(.usage, "--pattern: \(CLIError(classifying: error).message)", code: "usage")
            }
            let name = JetStreamEventBus.consumerName(group: nameOrGroup, pattern: parsed)
            do {
                let consumer = BusConsumer(try await jetStream.consumerInfo(stream: stream, name: name), settings: settings)
                bus.output.emit(consumer.lines, consumer.object)
                return
            } catch where isJetStreamError(error, NATSJetStreamErrorCode.consumerNotFound) {
                throw CLIError(
                    .notFound, "group '\(nameOrGroup)' has no consumer for '\(pattern)' on stream '\(stream)' (it would be named \(name))",
                    code: "notFound")
            }
        }
        // A consumer name first: names are what the server knows.
        do {
            let consumer = BusConsumer(try await jetStream.consumerInfo(stream: stream, name: nameOrGroup), settings: settings)
            bus.output.emit(consumer.lines, consumer.object)
            return
        } catch where isJetStreamError(error, NATSJetStreamErrorCode.consumerNotFound) || (error as? NATSError)?.code == .invalidName {
            // Not a consumer's name (a group may hold characters a name may not): a group's?
        } catch where isJetStreamError(error, NATSJetStreamErrorCode.streamNotFound) {
            throw CLIError(
                .notFound, "no consumer '\(nameOrGroup)': stream '\(stream)' does not exist; `eventbus stream ls` lists the streams", code: "notFound")
        }
        let matching = try await busConsumers(jetStream, stream: stream, settings: settings).filter { $0.identity?.group == nameOrGroup }
        switch matching.count {
        case 0:
            throw CLIError(
                .notFound, "no consumer or group '\(nameOrGroup)' on stream '\(stream)'; `eventbus consumer ls` lists them", code: "notFound")
        case 1:
            bus.output.emit(matching[0].lines, matching[0].object)
        default:
            let names = matching.map { "\($0.info.name) (\($0.identity?.pattern ?? "?"))" }.joined(separator: ", ")
            throw CLIError(
                .usage, "group '\(nameOrGroup)' has \(matching.count) consumers, one per pattern: \(names); name one, or pass --pattern",
                code: "usage")
        }
    }
}

extension EventBusCLI {
    struct ConsumerCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "consumer", abstract: "List a stream's consumers with the groups they serve, or show one.",
            subcommands: [List.self, Info.self])

        func run() async throws {
            FileHandle.standardError.write(Data((Self.helpMessage() + "\n").utf8))
            throw ExitCode(ExitStatus.usage.rawValue)
        }

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "ls",
                abstract: "List the consumers: the bus names a group's consumer <group>-<hash of the pattern>.",
                aliases: ["list"])
            @OptionGroup var bus: BusOptions
            @Option(help: "The stream (default: the bus's, EVENT_BUS_JETSTREAM_STREAM).") var stream: String?

            func run() async throws {
                try await bus.withJetStream { jetStream, settings in
                    let stream = stream ?? settings.jetStream.streamName
                    let consumers: [BusConsumer]
                    do {
                        consumers = try await busConsumers(jetStream, stream: stream, settings: settings)
                    } catch where isJetStreamError(error, NATSJetStreamErrorCode.streamNotFound) {
                        throw CLIError(
                            .notFound,
                            "stream '\(stream)' does not exist"
                                + (stream == settings.jetStream.streamName ? "; the first start of the bus creates it" : ""),
                            code: "notFound")
                    }
                    if bus.output.json {
                        for consumer in consumers { bus.output.emit("", consumer.object) }
                        return
                    }
                    guard !consumers.isEmpty else {
                        bus.output.note("no consumers on stream \(shown(stream)); a group's first subscriber creates its consumer")
                        return
                    }
                    let rows = consumers.map { consumer -> [String] in
                        [
                            shown(consumer.info.name), consumer.groupText, consumer.patternText, Human.count(consumer.info.pendingCount),
                            "\(consumer.info.ackPendingCount)", "\(consumer.info.redeliveredCount)", "\(consumer.info.waitingCount)",
                        ]
                    }
                    for line in Human.table(["CONSUMER", "GROUP", "PATTERN", "PENDING", "ACK PENDING", "REDELIVERED", "WAITING"], rows) {
                        bus.output.note(line)
                    }
                }
            }
        }

        struct Info: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Show a consumer, by its name or by the group it serves (`consumer info billing`).")
            @OptionGroup var bus: BusOptions
            @Argument(help: "The consumer name, or a group's name.") var name: String
            @Option(help: "The group's pattern, when the group subscribes to several.") var pattern: String?
            @Option(help: "The stream (default: the bus's, EVENT_BUS_JETSTREAM_STREAM).") var stream: String?

            func run() async throws {
                try await showConsumer(bus, name, pattern: pattern, stream: stream)
            }
        }
    }

    /// The name before `consumer info` existed; kept so that scripts keep working.
    struct ConsumerInfoAlias: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "consumer-info", abstract: "The same as `consumer info`.", shouldDisplay: false)
        @OptionGroup var bus: BusOptions
        @Argument(help: "The consumer name, or a group's name.") var name: String
        @Option(help: "The group's pattern, when the group subscribes to several.") var pattern: String?

        func run() async throws {
            try await showConsumer(bus, name, pattern: pattern, stream: nil)
        }
    }
}
