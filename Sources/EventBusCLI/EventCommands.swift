import ArgumentParser
import EventBus
import Foundation

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

/// An event as `--json` prints it: the payload as text when it is UTF-8, else as base64.
func eventObject(_ event: Event) -> JSONObject {
    var object: JSONObject = [
        "id": .string(event.id),
        "subject": .string(event.subject),
        "type": .string(event.type),
        "source": .string(event.source),
        "time": .optional(event.time.map { $0.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)) }),
        "datacontenttype": .optional(event.dataContentType),
        "extensions": .object(JSONObject(event.extensions.sorted { $0.key < $1.key }.map { ($0.key, JSONValue.string($0.value)) })),
    ]
    if let text = String(validating: event.data, as: UTF8.self) {
        object["data"] = .string(text)
    } else {
        object["data_base64"] = .string(Data(event.data).base64EncodedString())
    }
    return object
}

/// A delivery as `--json` prints it: the event, with where and how often it was delivered.
func deliveryObject(_ delivery: Delivery) -> JSONObject {
    var object: JSONObject = ["sequence": .int(delivery.sequence), "attempt": .int(delivery.deliveryCount), "request": .bool(delivery.isRequest)]
    object.fields += eventObject(delivery.event).fields
    return object
}

extension EventBusCLI {
    struct Publish: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Publish one event and print its receipt.")
        @OptionGroup var bus: BusOptions
        @Argument(help: "The event subject, e.g. orders.created.") var subject: String
        @Argument(help: "The payload (text).") var data: String = ""
        @Option(
            help: ArgumentHelp(
                "Read the payload from this file instead, byte for byte ('-': standard input).",
                discussion: "For binary data, and for payloads longer than a command-line argument may be.",
                valueName: "path"))
        var dataFile: String?
        @Option(help: "CloudEvents type.") var type = "com.example.cli"
        @Option(help: "CloudEvents source.") var source = "/eventbus-cli"
        @Option(help: "Event id (default: a new one); publishing an id twice inside the duplicate window stores it once.") var id: String?
        @Option(help: "Content type of the payload.") var contentType = "text/plain"
        @Flag(help: "Allow the in-memory backend (EVENT_BUS_BACKEND=memory), whose events die with this command.") var allowMemory = false

        func validate() throws {
            if dataFile != nil && !data.isEmpty {
                throw ValidationError("give the payload as <data> or with --data-file, not both")
            }
        }

        func run() async throws {
            let payload = try dataFile.map(EventBusCLI.readPayload) ?? Array(data.utf8)
            var event = Event(subject: subject, type: type, source: source, dataContentType: contentType, data: payload)
            if let id { event.id = id }
            let receipt = try await bus.withSharedBus("publish", allowMemory: allowMemory) { [event] eventBus in try await eventBus.publish(event) }
            bus.output.emit(
                "published \(shown(event.id)) to \(shown(subject)): stream \(shown(receipt.stream)) sequence \(receipt.sequence)\(receipt.duplicate ? " (duplicate, not stored again)" : "")",
                [
                    "id": .string(event.id), "subject": .string(subject), "stream": .string(receipt.stream),
                    "sequence": .int(receipt.sequence), "duplicate": .bool(receipt.duplicate),
                ])
        }
    }

    /// The bytes of `--data-file`: a file, or standard input for `-` (read to its end).
    static func readPayload(_ path: String) throws -> [UInt8] {
        if path == "-" { return Array(FileHandle.standardInput.readDataToEndOfFile()) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CLIError(.notFound, "cannot read --data-file '\(path)': no such readable file", code: "notFound")
        }
        return Array(data)
    }

    struct Subscribe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print events on a pattern (and ack them), each as soon as it arrives.",
            discussion: "Runs until --count events arrived, or SIGINT/SIGTERM (exit 0 either way).")
        @OptionGroup var bus: BusOptions
        @Argument(help: "Subject pattern: * one token, > the rest.") var pattern: String
        @Option(help: "Join this group (durable on JetStream).") var group: String?
        @Flag(help: "Start with every retained event instead of new ones (for a new group or a subscriber without group).") var all = false
        @Option(help: "Stop after this many events; 0 for no limit.") var count = 0
        @Flag(help: "Allow the in-memory backend (EVENT_BUS_BACKEND=memory), whose events die with this command.") var allowMemory = false

        func validate() throws {
            if count < 0 { throw ValidationError("--count \(count) must be 0 (no limit) or more") }
        }

        func run() async throws {
            let (pattern, options, count, output) = (self.pattern, SubscriptionOptions(group: group, start: all ? .all : .new), self.count, bus.output)
            do {
                try await bus.withSharedBus("subscribe", allowMemory: allowMemory) { eventBus in
                    let subscription = try await eventBus.subscribe(pattern, options: options)
                    var seen = 0
                    // Ends on the count, or when a signal cancels this task.
                    for try await delivery in subscription {
                        // Written and flushed before the ack: an acked event is in the pipe.
                        output.emit(render(delivery) + (delivery.isRequest ? " (request, not answered)" : ""), deliveryObject(delivery))
                        try await delivery.ack()
                        seen += 1
                        if count > 0 && seen >= count { break }
                    }
                    // Hands back at once whatever the subscription fetched beyond the count.
                    await subscription.close()
                }
            } catch is CancellationError {
                // SIGINT or SIGTERM: the way to stop a subscriber without a count.
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

        func validate() throws {
            if timeout < 1 { throw ValidationError("--timeout \(timeout) must be at least 1 second") }
        }

        func run() async throws {
            let request = Event(subject: subject, type: "com.example.cli.request", source: "/eventbus-cli", data: Array(data.utf8))
            let timeout = Duration.seconds(self.timeout)
            let reply = try await bus.withSharedBus("request", allowMemory: allowMemory) { eventBus in try await eventBus.request(request, timeout: timeout) }
            bus.output.emit(
                "reply \(shown(reply.id)) type=\(shown(reply.type)) data=\(shown(String(decoding: reply.data, as: UTF8.self)))", eventObject(reply))
        }
    }
}
