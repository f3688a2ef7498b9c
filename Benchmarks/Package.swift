// swift-tools-version: 6.2
// Benchmarks for the NATS client, a nested package so that the library does not depend on
// package-benchmark. Run them with Benchmarks/run.sh (see its header).
import PackageDescription

let package = Package(
    name: "Benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "swift-nats-eventbus", path: ".."),
        // Only the malloc interposer trait: the default also turns on the ARC runtime interposer,
        // which we do not measure and whose package is not needed.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.0", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        // The backends of the instrumented EventBus variants (BenchmarkTelemetry).
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.1.0"),
    ],
    targets: [
        // cnats for the raw baselines. The root package keeps its CNATS module internal to NATS,
        // so the benchmarks declare their own module over the same header and library.
        .systemLibrary(
            name: "CNATSRaw",
            pkgConfig: "libnats",
            providers: [.apt(["libnats-dev"])]
        ),
        // What every benchmark file shares: a nats-server per benchmark process, the workloads'
        // constants, clocks, the metric sets, and the raw cnats helpers (connections, JetStream).
        .target(
            name: "BenchmarkSupport",
            dependencies: [
                "CNATSRaw",
                .product(name: "NATS", package: "swift-nats-eventbus"),
                .product(name: "EventBus", package: "swift-nats-eventbus"),
                .product(name: "EventBusJetStream", package: "swift-nats-eventbus"),
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ]
        ),
        // W1-W3: core NATS workloads against a nats-server, raw cnats beside the NATS module.
        .executableTarget(
            name: "CoreNATS",
            dependencies: [
                "BenchmarkSupport",
                "CNATSRaw",
                .product(name: "NATS", package: "swift-nats-eventbus"),
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/CoreNATS",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // W4-W8: JetStream workloads, raw cnats beside the NATS module and the EventBus on JetStream.
        .executableTarget(
            name: "JetStream",
            dependencies: [
                "BenchmarkSupport",
                "CNATSRaw",
                .product(name: "NATS", package: "swift-nats-eventbus"),
                .product(name: "EventBus", package: "swift-nats-eventbus"),
                .product(name: "EventBusJetStream", package: "swift-nats-eventbus"),
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/JetStream",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // Peak resident memory while consuming 100,000 and 1,000,000 stored messages (pull
        // consumer, EventBus), and while publishing that many through the EventBus and then
        // consuming them: it must stay flat.
        .executableTarget(
            name: "Memory",
            dependencies: [
                "BenchmarkSupport",
                "CNATSRaw",
                .product(name: "NATS", package: "swift-nats-eventbus"),
                .product(name: "EventBus", package: "swift-nats-eventbus"),
                .product(name: "EventBusJetStream", package: "swift-nats-eventbus"),
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/Memory",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // Server-free micro benchmarks of the public API's hot helpers; cheap enough for CI.
        .executableTarget(
            name: "Micro",
            dependencies: [
                "BenchmarkSupport",
                .product(name: "NATS", package: "swift-nats-eventbus"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/Micro",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // M1, M2 and the variants that isolate their costs: the in-memory EventBus, no server, no
        // C library (EventBus does not depend on NATS). Cheap enough for CI's quick mode.
        .executableTarget(
            name: "InMemory",
            dependencies: [
                "BenchmarkSupport",
                .product(name: "EventBus", package: "swift-nats-eventbus"),
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/InMemory",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
