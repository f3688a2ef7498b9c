import Logging
import NATS

/// The NATS module's configuration for a benchmark: its defaults, pointed at the benchmark's server.
/// `adjust` changes what a variant's name says it changes.
public func natsConfiguration(
    _ server: BenchmarkServer, sendAsap: Bool = false, adjust: (inout NATSConnectionConfiguration) -> Void = { _ in }
) throws -> NATSConnectionConfiguration {
    var configuration = try NATSConnectionConfiguration(servers: [server.url])
    configuration.sendAsap = sendAsap
    adjust(&configuration)
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
    public static func connectForBenchmark(
        _ server: BenchmarkServer, sendAsap: Bool = false, adjust: (inout NATSConnectionConfiguration) -> Void = { _ in }
    ) async throws -> NATSConnection {
        try await NATSConnection.connect(configuration: natsConfiguration(server, sendAsap: sendAsap, adjust: adjust), logger: benchmarkLogger)
    }
}
