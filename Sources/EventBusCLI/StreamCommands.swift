import ArgumentParser
import EventBusBootstrap
import Foundation
import NATS

/// A stream as `--json` prints it; `bus` says whether it is the bus's own.
func streamObject(_ info: NATSStreamInfo, bus: Bool) -> JSONObject {
    let config = info.configuration
    return [
        "name": .string(config.name),
        "bus": .bool(bus),
        "description": .optional(config.description),
        "subjects": .strings(config.subjects),
        "storage": .string(config.storage.rawValue),
        "replicas": .int(config.replicas),
        "retention": .string(config.retention.rawValue),
        "max_age_ns": .nanoseconds(config.maxAge),
        "max_messages": .int(config.maxMessages),
        "max_bytes": .int(config.maxBytes),
        "duplicate_window_ns": .nanoseconds(config.duplicateWindow),
        "messages": .int(info.state.messages),
        "bytes": .int(info.state.bytes),
        "first_sequence": .int(info.state.firstSequence),
        "last_sequence": .int(info.state.lastSequence),
        "consumers": .int(info.state.consumerCount),
    ]
}

/// The stream's facts for a person, one aspect a line.
func streamLines(_ info: NATSStreamInfo, bus: Bool) -> String {
    let config = info.configuration
    let maxAge = config.maxAge == .zero ? "unlimited" : Human.duration(config.maxAge)
    return """
        stream            \(shown(config.name))\(bus ? " (the bus's stream)" : "")
        description       \(shown(config.description ?? "-"))
        subjects          \(shown(config.subjects.joined(separator: ", ")))
        storage           \(config.storage.rawValue), replicas \(config.replicas), retention \(config.retention.rawValue)
        limits            max age \(maxAge), max messages \(Human.limit(config.maxMessages) { Human.count($0) }), max bytes \(Human.limit(config.maxBytes) { Human.bytes($0) })
        duplicate window  \(Human.duration(config.duplicateWindow))
        messages          \(Human.count(info.state.messages)) (\(Human.bytes(info.state.bytes))), sequences \(info.state.firstSequence)...\(info.state.lastSequence)
        consumers         \(info.state.consumerCount)
        """
}

/// Every stream of the account; one deleted while the list is read is left out.
func streamInfos(_ jetStream: NATSJetStream) async throws -> [NATSStreamInfo] {
    var infos: [NATSStreamInfo] = []
    for name in try await jetStream.streamNames() {
        if let info = try await found(await jetStream.streamInfo(name)) { infos.append(info) }
    }
    return infos
}

/// `stream info` and its old spelling `stream-info`.
func showStream(_ bus: BusOptions, name: String?) async throws {
    try await bus.withJetStream { jetStream, settings in
        let name = name ?? settings.jetStream.streamName
        let info: NATSStreamInfo
        do {
            info = try await jetStream.streamInfo(name)
        } catch where isJetStreamError(error, NATSJetStreamErrorCode.streamNotFound) {
            let hint =
                name == settings.jetStream.streamName
                ? "; the first start of the bus (a service, or `eventbus publish`) creates it" : "; `eventbus stream ls` lists the streams"
            throw CLIError(.notFound, "stream '\(name)' does not exist\(hint)", code: "notFound")
        }
        let isBus = name == settings.jetStream.streamName
        bus.output.emit(streamLines(info, bus: isBus), streamObject(info, bus: isBus))
    }
}

extension EventBusCLI {
    struct StreamCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "stream", abstract: "List the JetStream streams, or show one.", subcommands: [List.self, Info.self])

        func run() async throws {
            FileHandle.standardError.write(Data((Self.helpMessage() + "\n").utf8))
            throw ExitCode(ExitStatus.usage.rawValue)
        }

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "ls", abstract: "List the account's streams; * marks the bus's.", aliases: ["list"])
            @OptionGroup var bus: BusOptions

            func run() async throws {
                try await bus.withJetStream { jetStream, settings in
                    let infos = try await streamInfos(jetStream)
                    let busStream = settings.jetStream.streamName
                    if bus.output.json {
                        for info in infos { bus.output.emit("", streamObject(info, bus: info.configuration.name == busStream)) }
                        return
                    }
                    guard !infos.isEmpty else {
                        bus.output.note("no streams; the first start of the bus (a service, or `eventbus publish`) creates \(shown(busStream))")
                        return
                    }
                    let rows = infos.map { info -> [String] in
                        let config = info.configuration
                        return [
                            shown(config.name) + (config.name == busStream ? " *" : ""), shown(config.subjects.joined(separator: ",")),
                            config.storage.rawValue, "\(config.replicas)", Human.count(info.state.messages), Human.bytes(info.state.bytes),
                            "\(info.state.consumerCount)",
                        ]
                    }
                    for line in Human.table(["STREAM", "SUBJECTS", "STORAGE", "REPLICAS", "MESSAGES", "BYTES", "CONSUMERS"], rows) {
                        bus.output.note(line)
                    }
                }
            }
        }

        struct Info: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Show a stream (default: the bus's, EVENT_BUS_JETSTREAM_STREAM).")
            @OptionGroup var bus: BusOptions
            @Argument(help: "The stream name.") var name: String?

            func run() async throws {
                try await showStream(bus, name: name)
            }
        }
    }

    /// The name before `stream info` existed; kept so that scripts keep working.
    struct StreamInfoAlias: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "stream-info", abstract: "The same as `stream info`.", shouldDisplay: false)
        @OptionGroup var bus: BusOptions
        @Argument(help: "The stream name.") var name: String?

        func run() async throws {
            try await showStream(bus, name: name)
        }
    }
}
