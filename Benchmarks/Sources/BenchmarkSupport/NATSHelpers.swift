import Logging
import NATS

/// The NATS module's configuration for a benchmark: its defaults, pointed at the benchmark's server.
public func natsConfiguration(_ server: BenchmarkServer, sendAsap: Bool = false) throws -> NATSConnectionConfiguration {
    var configuration = try NATSConnectionConfiguration(servers: [server.url])
    configuration.sendAsap = sendAsap
    return configuration
}

/// Warnings and errors only (a slow consumer, for instance), not the connect/close notices.
public let benchmarkLogger: Logger = {
    var logger = Logger(label: "nats-benchmarks")
    logger.logLevel = .warning
    return logger
}()

extension NATSConnection {
    /// Connects with the module's defaults (and SendAsap when asked) to the benchmark's server.
    public static func connectForBenchmark(_ server: BenchmarkServer, sendAsap: Bool = false) async throws -> NATSConnection {
        try await NATSConnection.connect(configuration: natsConfiguration(server, sendAsap: sendAsap), logger: benchmarkLogger)
    }
}
