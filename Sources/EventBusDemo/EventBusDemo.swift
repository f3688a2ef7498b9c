import ArgumentParser
import EventBus
import EventBusBootstrap
import Foundation
import Logging
import Metrics
import Prometheus

/// `eventbus-demo`: a small order workflow on the event bus.
///
/// With no arguments it runs every role in one process on the backend `EVENT_BUS_BACKEND` picks
/// (in memory by default) and prints a summary. With a role name it runs that role alone, so the
/// workflow can spread over processes and hosts that share a JetStream bus.
@main
struct EventBusDemo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eventbus-demo",
        abstract: "An order workflow on the event bus: orders, billing (two workers), notifications, inventory.",
        discussion: """
            The backend comes from the environment: EVENT_BUS_BACKEND=memory (default) or jetstream, with \
            EVENT_BUS_NATS_SERVERS and the other EVENT_BUS_* variables (see docs/configuration.md). Roles as \
            separate processes need the jetstream backend: in-memory buses do not cross processes.
            """,
        subcommands: [All.self, Orders.self, Billing.self, Notifications.self, Inventory.self, History.self],
        defaultSubcommand: All.self)
}

/// Options every role shares.
struct CommonOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "warning"

    @Flag(help: "Print every finished span as a JSON line to standard error (trace, span, parent, name).")
    var traceToStderr = false

    func logger(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .warning
        return logger
    }

    @Option(
        help: ArgumentHelp(
            "Serve /health/live, /health/ready and /metrics on this port (0: any free port). Off by default; also EVENT_BUS_DEMO_OPS_PORT.",
            valueName: "port"))
    var opsPort: Int?

    @Option(help: "The address the operations endpoint binds. Also EVENT_BUS_DEMO_OPS_ADDRESS.")
    var opsAddress: String?

    /// The operations endpoint's port, from the flag or the environment; `nil` when off.
    func operationsPort() throws -> Int? {
        let environment = ProcessInfo.processInfo.environment
        guard let port = try opsPort ?? environment["EVENT_BUS_DEMO_OPS_PORT"].map({ text -> Int in
            guard let value = Int(text) else {
                throw ValidationError("EVENT_BUS_DEMO_OPS_PORT '\(text)' is not a port number (0-65535)")
            }
            return value
        }) else { return nil }
        guard (0...65_535).contains(port) else { throw ValidationError("operations port \(port) must be between 0 and 65535") }
        return port
    }

    /// Runs `body` with the bus the environment configures, both in one `ServiceGroup`: SIGTERM or
    /// SIGINT stops `body` first (its subscriptions hand back what they hold), then drains the bus.
    /// With an operations port, metrics go to a Prometheus registry (bootstrapped before the bus
    /// exists, so that its metrics register there) and the endpoint serves while `body` runs.
    func withBus<Value: Sendable>(
        _ label: String, _ body: @escaping @Sendable (any EventBus, EventBusSettings) async throws -> Value
    ) async throws -> Value {
        do {
            return try await withConfiguredBus(label, body)
        } catch is CancellationError {
            // SIGTERM or SIGINT: the role stopped and the bus drained as asked, so this is a clean
            // exit (status 0), not an error to print.
            logger(label).notice("stopped by a signal; events in hand were settled or handed back")
            throw ExitCode.success
        }
    }

    /// ``withBus(_:_:)`` with the event store of the same backend (the orders' histories), open
    /// while `body` runs.
    func withBusAndStore<Value: Sendable>(
        _ label: String, _ body: @escaping @Sendable (any EventBus, any EventStore, EventBusSettings) async throws -> Value
    ) async throws -> Value {
        try await withBus(label) { bus, settings in
            try await EventStoreFactory.withEventStore(settings: settings, logger: logger(label + ".store")) { store in
                try await body(bus, store, settings)
            }
        }
    }

    private func withConfiguredBus<Value: Sendable>(
        _ label: String, _ body: @escaping @Sendable (any EventBus, EventBusSettings) async throws -> Value
    ) async throws -> Value {
        let settings = try EventBusSettings.fromEnvironment(
            applicationVariables: ["EVENT_BUS_DEMO_OPS_PORT", "EVENT_BUS_DEMO_OPS_ADDRESS"])
        let logger = logger(label)
        // Before the bus is made: it reads the bootstrapped tracer once.
        if traceToStderr { StderrTracer.bootstrap() }
        guard let port = try operationsPort() else {
            return try await EventBusFactory.withEventBus(settings: settings, logger: logger) { bus in
                try await body(bus, settings)
            }
        }
        let host = opsAddress ?? ProcessInfo.processInfo.environment["EVENT_BUS_DEMO_OPS_ADDRESS"] ?? "127.0.0.1"
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return try await EventBusFactory.withEventBus(settings: settings, logger: logger) { bus in
            let endpoint = try await OperationsEndpoint.start(host: host, port: port, registry: registry) { await bus.health() }
            // On stdout, so that whoever started the demo with port 0 learns the port.
            print("operations endpoint listening on http://\(endpoint.localAddress) (/health/live, /health/ready, /metrics)")
            fflush(nil)
            do {
                let value = try await body(bus, settings)
                await endpoint.stop()
                return value
            } catch {
                await endpoint.stop()
                throw error
            }
        }
    }
}

extension EventBusDemo {
    /// Every role in one process.
    struct All: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "all", abstract: "Run every role in this process and print a summary.")

        @OptionGroup var common: CommonOptions
        @Option(help: "How many orders to place.") var orders = 40
        @Option(help: "Seconds to wait for every order to be billed or dead-lettered.") var timeout = 60

        func run() async throws {
            let orders = self.orders
            let timeout = self.timeout
            let counters = DemoCounters()
            let started = ContinuousClock.now
            let expectedDeadLetters = (0..<orders).filter(Demo.isPoison).count
            let (outcome, backend, history): (Bool, String, [RecordedEvent]) = try await common.withBusAndStore("eventbus-demo") {
                bus, store, settings in
                let activity = Activity()
                // Every role subscribes before the first order is placed: nothing can be missed.
                let roles = [
                    try await Roles.inventory(bus: bus, counters: counters),
                    try await Roles.billing(bus: bus, store: store, worker: "billing-1", flaky: false, counters: counters, activity: activity),
                    try await Roles.billing(bus: bus, store: store, worker: "billing-2", flaky: true, counters: counters, activity: activity),
                    try await Roles.notifications(bus: bus, store: store, counters: counters, activity: activity),
                ]
                let runID = Demo.newRunID()
                let done: Bool = try await withThrowingTaskGroup(of: Void.self) { group in
                    for role in roles { group.addTask { try await role() } }
                    try await Roles.orders(bus: bus, store: store, count: orders, first: 0, runID: runID, counters: counters)
                    let deadline = ContinuousClock.now + .seconds(timeout)
                    var done = false
                    while ContinuousClock.now < deadline {
                        let values = counters.snapshot
                        if values.notified + values.deadLettered >= values.published && values.deadLettered >= expectedDeadLetters {
                            done = true
                            break
                        }
                        try await Task.sleep(for: .milliseconds(50))
                    }
                    // The roles' subscriptions end and hand back what they hold; the bus then drains.
                    group.cancelAll()
                    while let _ = try? await group.next() {}
                    return done
                }
                // A dead-lettered order's history shows the whole path: placed, then dead-lettered.
                let example = (0..<orders).first(where: Demo.isPoison) ?? 0
                let history = try await store.load(
                    try AggregateID(category: "order", id: "\(Demo.orderID(example))-\(runID)"))
                return (done, settings.backend.rawValue, history)
            }
            printSummary(counters.snapshot, backend: backend, duration: ContinuousClock.now - started)
            if let first = history.first {
                print("  history of \(first.aggregate.id): " + history.map { "v\($0.version) \($0.event.type)" }.joined(separator: ", "))
            }
            if !outcome { throw ValidationError("not every order was billed or dead-lettered within \(timeout) s") }
        }

        func printSummary(_ values: DemoCounters.Values, backend: String, duration: Duration) {
            let billed = values.billedByWorker.values.reduce(0, +)
            let perWorker = values.billedByWorker.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")
            let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
            print("""

                eventbus-demo summary (backend: \(backend))
                  orders published     \(values.published)
                  inventory checks     \(values.inventoryChecks) (\(values.inStock) in stock, request/reply)
                  billed               \(billed) (\(perWorker))
                  retried deliveries   \(values.retried) (after \(values.failedAttempts) failed attempts, with backoff)
                  dead-lettered        \(values.deadLettered) (to \(Demo.deadLetterSubject))
                  notifications        \(values.notified)
                  duration             \(String(format: "%.2f", seconds)) s
                """)
        }
    }

    /// Places orders.
    struct Orders: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "orders", abstract: "Check inventory and publish orders.")
        @OptionGroup var common: CommonOptions
        @Option(help: "How many orders to place.") var count = 40
        @Option(help: "The number of the first order.") var first = 0
        @Option(help: "Distinguishes this run's event ids from earlier runs' (default: random).") var runID = Demo.newRunID()

        func run() async throws {
            let (count, first, runID) = (self.count, self.first, self.runID)
            let counters = DemoCounters()
            try await common.withBusAndStore("eventbus-demo.orders") { bus, store, _ in
                try await Roles.orders(bus: bus, store: store, count: count, first: first, runID: runID, counters: counters)
            }
            report("DONE published=\(counters.snapshot.published)")
        }
    }

    /// One billing worker of the `billing` group.
    struct Billing: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "billing", abstract: "Run one worker of the billing group.")
        @OptionGroup var common: CommonOptions
        @Option(help: "The worker's name.") var worker = "billing-\(ProcessInfo.processInfo.processIdentifier)"
        @Flag(help: "Fail the first attempt of every fourth order (a flaky payment provider).") var flaky = false
        @Option(help: "Exit after this many seconds without work (after the first order); 0 to run forever.") var idleExit = 0
        @Option(help: "Exit after this many seconds at most; 0 for no limit.") var maxSeconds = 0

        func run() async throws {
            let (worker, flaky) = (self.worker, self.flaky)
            try await common.withBusAndStore("eventbus-demo.billing") { [idleExit, maxSeconds] bus, store, _ in
                try await runRole(idleExit: idleExit, maxSeconds: maxSeconds) { activity in
                    try await Roles.billing(bus: bus, store: store, worker: worker, flaky: flaky, counters: DemoCounters(), activity: activity)
                }
            }
        }
    }

    /// Notifications and dead-letter reports.
    struct Notifications: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "notifications", abstract: "Report payments and dead letters.")
        @OptionGroup var common: CommonOptions
        @Option(help: "Exit after this many seconds without work (after the first event); 0 to run forever.") var idleExit = 0
        @Option(help: "Exit after this many seconds at most; 0 for no limit.") var maxSeconds = 0

        func run() async throws {
            try await common.withBusAndStore("eventbus-demo.notifications") { [idleExit, maxSeconds] bus, store, _ in
                try await runRole(idleExit: idleExit, maxSeconds: maxSeconds) { activity in
                    try await Roles.notifications(bus: bus, store: store, counters: DemoCounters(), activity: activity)
                }
            }
        }
    }

    /// Answers inventory checks.
    struct Inventory: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "inventory", abstract: "Answer inventory checks (request/reply).")
        @OptionGroup var common: CommonOptions
        @Option(help: "Exit after this many seconds at most; 0 for no limit.") var maxSeconds = 0

        func run() async throws {
            try await common.withBus("eventbus-demo.inventory") { [maxSeconds] bus, _ in
                try await runRole(idleExit: 0, maxSeconds: maxSeconds) { _ in
                    try await Roles.inventory(bus: bus, counters: DemoCounters())
                }
            }
        }
    }
}

extension EventBusDemo {
    /// Prints an order's history from the event store.
    struct History: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "history",
            abstract: "Print an order's history from the event store (placed, billed, dead-lettered).",
            discussion: """
                The order is named as its PUBLISHED line prints it, with the run id: order-0007-k3j2x1. Needs the \
                jetstream backend: an in-memory store lives and dies with its process (the 'all' run prints one \
                history in its summary).
                """)
        @OptionGroup var common: CommonOptions
        @Argument(help: "The order's history id, <order id>-<run id>.") var order: String

        func run() async throws {
            let aggregate: AggregateID
            do {
                aggregate = try AggregateID(category: "order", id: order)
            } catch {
                throw ValidationError(error.message)
            }
            let settings = try EventBusSettings.fromEnvironment(
                applicationVariables: ["EVENT_BUS_DEMO_OPS_PORT", "EVENT_BUS_DEMO_OPS_ADDRESS"])
            let history = try await EventStoreFactory.withEventStore(settings: settings, logger: common.logger("eventbus-demo.history")) {
                store in try await store.load(aggregate)
            }
            guard !history.isEmpty else {
                report("NO-HISTORY \(aggregate.id)")
                throw ExitCode(66)
            }
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            for recorded in history {
                let correlation = recorded.event.correlationID.map { " correlation=\($0)" } ?? ""
                let data = String(decoding: recorded.event.data.prefix(120), as: UTF8.self)
                report("v\(recorded.version) \(formatter.string(from: recorded.recordedAt)) \(recorded.event.type) id=\(recorded.event.id)\(correlation) \(data)")
            }
        }
    }
}

/// Starts a role (its subscriptions exist when READY is printed) and runs it until it is idle for
/// `idleExit` seconds (after its first event), `maxSeconds` passed, it fails, or a signal stops
/// it; then its task is cancelled, which ends its subscriptions (handing back what they hold).
func runRole(idleExit: Int, maxSeconds: Int, _ start: @escaping @Sendable (Activity) async throws -> RoleLoop) async throws {
    let activity = Activity()
    let role = try await start(activity)
    report("READY")
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await role() }
        group.addTask {
            let limit: Duration = maxSeconds > 0 ? .seconds(maxSeconds) : .seconds(365 * 24 * 3600)
            if idleExit > 0 {
                await activity.waitUntilIdle(.seconds(idleExit), limit: limit)
            } else {
                try await Task.sleep(for: limit)
            }
        }
        // Whichever ends first ends the role.
        _ = try await group.next()
        group.cancelAll()
        while let _ = try? await group.next() {}
    }
}
