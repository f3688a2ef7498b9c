// eventbus-reliability-agent: service processes for the multi-host reliability test where
// `eventbus-demo` has no knob for what the test needs: a billing worker that takes its time (so a
// worker host that is cut off certainly holds un-acked events), a publisher that logs every
// outcome with its stream sequence, and an audit that reads back the stream and its consumers.
//
//   eventbus-reliability-agent publisher --count N [--rate PER_S] [--subject order.created]
//                                        [--id-prefix P] [--retry-budget-ms MS] [--log PATH]
//   eventbus-reliability-agent billing   --worker NAME [--group billing] [--pattern order.>]
//                                        [--work-ms MS] [--log PATH]
//   eventbus-reliability-agent audit     [--wait-consumer PREFIX] [--read SUBJECT|none] [--log PATH]
//
// The bus comes from the EVENT_BUS_* variables, read by EventBusBootstrap exactly as
// eventbus-demo reads them: EVENT_BUS_BACKEND=jetstream, EVENT_BUS_NATS_SERVERS=nats://a:4222,...,
// EVENT_BUS_JETSTREAM_STREAM, EVENT_BUS_JETSTREAM_REPLICAS=3, ... Every action is written as one JSON line (AgentRecord) to
// --log (or standard output), so the test can check the history even after killing the process.
import EventBus
import EventBusBootstrap
import EventBusJetStream
import EventBusReliabilitySupport
import Foundation
import Logging
import NATS

struct Arguments {
    var role: String
    var options: [String: String] = [:]

    init(_ arguments: [String]) throws {
        guard let role = arguments.first else { throw AgentFailure("usage: eventbus-reliability-agent publisher|billing|audit [--option value ...]") }
        self.role = role
        var index = 1
        while index < arguments.count {
            let key = arguments[index]
            guard key.hasPrefix("--"), index + 1 < arguments.count else { throw AgentFailure("expected --option value, got \(key)") }
            options[String(key.dropFirst(2))] = arguments[index + 1]
            index += 2
        }
    }

    func string(_ key: String, _ fallback: String) -> String { options[key] ?? fallback }

    func int(_ key: String, _ fallback: Int) throws -> Int {
        guard let text = options[key] else { return fallback }
        guard let value = Int(text) else { throw AgentFailure("--\(key) \(text): expected an integer") }
        return value
    }
}

struct AgentFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func startBus(_ configuration: JetStreamEventBus.Configuration, logger: Logger, budget: Duration) async throws -> JetStreamEventBus {
    let deadline = ContinuousClock.now + budget
    while true {
        let bus = JetStreamEventBus(configuration: configuration, logger: logger)
        do {
            try await bus.start()
            return bus
        } catch {
            await bus.close()
            if ContinuousClock.now >= deadline { throw error }
            logger.warning("bus not ready yet, retrying", metadata: ["error": "\(error)"])
            try await Task.sleep(for: .milliseconds(500))
        }
    }
}

func runPublisher(_ arguments: Arguments, bus: JetStreamEventBus, log: AgentLogWriter) async throws {
    let count = try arguments.int("count", 100)
    let rate = try arguments.int("rate", 0)
    let subject = arguments.string("subject", "order.created")
    let prefix = arguments.string("id-prefix", "order-\(UUID().uuidString.prefix(8))")
    let budget = Duration.milliseconds(try arguments.int("retry-budget-ms", 30_000))
    let start = ContinuousClock.now
    for number in 0..<count {
        let number = number + 1
        if rate > 0 {
            let due = start + .milliseconds(Int64(number - 1) * 1_000 / Int64(rate))
            if due > .now { try await Task.sleep(until: due, clock: .continuous) }
        }
        let event = Event(
            id: "\(prefix)-\(number)", subject: subject, type: "com.example.\(subject)", source: "/orders",
            dataContentType: "application/json", data: Array("{\"order\":\(number),\"amountCents\":\(number * 100)}".utf8))
        let outcome = await EventPublishing.publish(event, on: bus, budget: budget)
        var record = AgentRecord(kind: "publish", at: outcome.completedAt)
        record.id = event.id
        record.startedAt = outcome.startedAt
        record.attempts = outcome.attempts
        switch outcome.outcome {
        case .acked(let sequence, let duplicate):
            record.outcome = "acked"
            record.sequence = sequence
            record.duplicate = duplicate
        case .failed(let reason):
            record.outcome = "failed"
            record.detail = reason
        case .unknown(let reason):
            record.outcome = "unknown"
            record.detail = reason
        }
        log.write(record)
    }
    var done = AgentRecord(kind: "done")
    done.detail = "published \(count)"
    log.write(done)
}

func runBilling(_ arguments: Arguments, bus: JetStreamEventBus, log: AgentLogWriter, logger: Logger) async throws {
    let worker = arguments.string("worker", ProcessInfo.processInfo.hostName)
    let group = arguments.string("group", "billing")
    let pattern = arguments.string("pattern", "order.>")
    let work = Duration.milliseconds(try arguments.int("work-ms", 0))
    while true {
        let subscription: EventSubscription
        do {
            subscription = try await bus.subscribe(pattern, options: SubscriptionOptions(group: group, start: .all))
        } catch {
            logger.warning("subscribe failed, retrying", metadata: ["error": "\(error)"])
            try await Task.sleep(for: .seconds(1))
            continue
        }
        var ready = AgentRecord(kind: "ready")
        ready.worker = worker
        log.write(ready)
        do {
            for try await delivery in subscription {
                var received = AgentRecord(kind: "delivery")
                received.worker = worker
                received.id = delivery.event.id
                received.sequence = delivery.sequence
                received.deliveryCount = delivery.deliveryCount
                log.write(received)
                if work > .zero { try await Task.sleep(for: work) }
                var acked = AgentRecord(kind: "ack")
                acked.worker = worker
                acked.id = delivery.event.id
                acked.sequence = delivery.sequence
                acked.deliveryCount = delivery.deliveryCount
                do {
                    try await delivery.ack()
                    acked.ok = true
                } catch {
                    acked.ok = false
                    acked.detail = "\(error)"
                }
                log.write(acked)
            }
            logger.warning("subscription ended; subscribing again")
        } catch {
            var failure = AgentRecord(kind: "error")
            failure.worker = worker
            failure.detail = "\(error)"
            log.write(failure)
            try await Task.sleep(for: .seconds(1))
        }
    }
}

func runAudit(_ arguments: Arguments, configuration: JetStreamEventBus.Configuration, log: AgentLogWriter, logger: Logger) async throws {
    let connection = try await NATSConnection.connect(configuration: configuration.connection, logger: logger)
    let probe = JetStreamProbe(connection: connection)
    let stream = configuration.streamName
    let deadline = ContinuousClock.now + .milliseconds(try arguments.int("wait-ms", 30_000))
    // --wait-consumer PREFIX: first wait until a consumer whose name starts so exists (a group's
    // durable consumer is created when its first member subscribes).
    if let prefix = arguments.options["wait-consumer"] {
        while !((try? await probe.consumers(stream: stream, timeout: .seconds(2))) ?? []).contains(where: { $0.name.hasPrefix(prefix) }) {
            if ContinuousClock.now >= deadline { throw AgentFailure("no consumer named \(prefix)* on stream \(stream)") }
            try await Task.sleep(for: .milliseconds(200))
        }
    }
    let cluster = try await probe.streamCluster(stream, timeout: .seconds(5))
    var summary = AgentRecord(kind: "stream")
    summary.name = stream
    summary.messages = cluster.messages
    summary.sequence = cluster.lastSequence
    summary.leader = cluster.leader
    summary.server = connection.connectedServer
    log.write(summary)
    for consumer in try await probe.consumers(stream: stream, timeout: .seconds(5)) {
        var record = AgentRecord(kind: "consumer")
        record.name = consumer.name
        record.leader = consumer.leader
        record.pending = consumer.pending
        record.ackPending = consumer.ackPending
        record.redelivered = consumer.redelivered
        record.ackFloor = consumer.ackFloorStreamSequence
        log.write(record)
    }
    if arguments.options["read"] != "none" {
        // --read SUBJECT: only the events on that bus subject (for example orders.created).
        let filter = arguments.options["read"].map { "\(configuration.subjectPrefix).\($0)" }
        for message in try await probe.readStream(stream, filterSubject: filter, timeout: .seconds(60)) {
            var record = AgentRecord(kind: "stored")
            record.id = message.id
            record.sequence = message.sequence
            log.write(record)
        }
    }
    log.write(AgentRecord(kind: "done"))
    await connection.close()
}

@main
struct ReliabilityAgent {
    static func main() async {
        var logger = Logger(label: "eventbus-reliability-agent")
        logger.logLevel = .notice
        let log: AgentLogWriter
        do {
            let arguments = try Arguments(Array(CommandLine.arguments.dropFirst()))
            log = try AgentLogWriter(path: arguments.options["log"])
            do {
                let settings = try EventBusSettings.fromEnvironment()
                guard settings.backend == .jetstream else {
                    throw AgentFailure("EVENT_BUS_BACKEND=\(settings.backend.rawValue): this program needs jetstream (an in-memory bus does not span processes)")
                }
                var configuration = settings.jetStream
                if configuration.connection.name == nil {
                    configuration.connection.name = "\(arguments.role)-\(arguments.options["worker"] ?? ProcessInfo.processInfo.hostName)"
                }
                switch arguments.role {
                case "publisher":
                    let bus = try await startBus(configuration, logger: logger, budget: .seconds(60))
                    try await runPublisher(arguments, bus: bus, log: log)
                    await bus.close()
                case "billing":
                    let bus = try await startBus(configuration, logger: logger, budget: .seconds(60))
                    try await runBilling(arguments, bus: bus, log: log, logger: logger)
                case "audit":
                    try await runAudit(arguments, configuration: configuration, log: log, logger: logger)
                default:
                    throw AgentFailure("unknown role \(arguments.role): publisher, billing or audit")
                }
            } catch {
                var failure = AgentRecord(kind: "error")
                failure.detail = "\(error)"
                log.write(failure)
                FileHandle.standardError.write(Data("eventbus-reliability-agent: \(error)\n".utf8))
                exit(1)
            }
        } catch {
            FileHandle.standardError.write(Data("eventbus-reliability-agent: \(error)\n".utf8))
            exit(2)
        }
    }
}
