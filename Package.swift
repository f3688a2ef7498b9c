// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "swift-nats-eventbus",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "NATS", targets: ["NATS"]),
        .library(name: "EventBus", targets: ["EventBus"]),
        .library(name: "EventBusConformance", targets: ["EventBusConformance"]),
        .library(name: "EventBusJetStream", targets: ["EventBusJetStream"]),
        .library(name: "EventBusBootstrap", targets: ["EventBusBootstrap"]),
        .executable(name: "eventbus-demo", targets: ["EventBusDemo"]),
        .executable(name: "eventbus", targets: ["EventBusCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.1.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.0.0", traits: []),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        // Only the demo's operations endpoint uses these two; no library target depends on them.
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.60.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.0.0"),
        // Only the `eventbus` CLI's bench uses it (latency percentiles).
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
        // A command plugin only (`swift package generate-documentation`, `make docs`); no target links it.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
    ],
    targets: [
        // cnats, the NATS C client (Debian/Ubuntu: libnats-dev). Only Sources/NATS/Native/ imports it.
        .systemLibrary(
            name: "CNATS",
            pkgConfig: "libnats",
            providers: [.apt(["libnats-dev"])]
        ),
        .target(
            name: "NATS",
            dependencies: [
                "CNATS",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Configuration", package: "swift-configuration"),
            ]
        ),
        // Starts and controls real nats-server processes for integration tests.
        .target(
            name: "NATSTestSupport",
            dependencies: [],
            path: "Tests/NATSTestSupport"
        ),
        .testTarget(
            name: "NATSTests",
            dependencies: [
                "NATS",
                "NATSTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
            ]
        ),
        // The EventBus protocol and its in-memory backends. Never depends on NATS or CNATS, so an
        // in-memory user needs no C library.
        .target(
            name: "EventBus",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HeapModule", package: "swift-collections"),
                // Metric and span APIs only (no backend): a no-op unless the application bootstraps one.
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
            ]
        ),
        // The behaviour suite every EventBus backend must pass; a library so any backend's tests can run it.
        .target(
            name: "EventBusConformance",
            dependencies: ["EventBus"]
        ),
        .testTarget(
            name: "EventBusTests",
            // NATSTestSupport for its bounded waits only (it starts no server here and imports no NATS).
            dependencies: ["EventBus", "EventBusConformance", "NATSTestSupport"]
        ),
        // The EventBus on NATS JetStream.
        .target(
            name: "EventBusJetStream",
            dependencies: [
                "EventBus",
                "NATS",
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "EventBusJetStreamTests",
            dependencies: [
                "EventBusJetStream",
                "EventBusConformance",
                "NATSTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
            ]
        ),
        // Metrics and traces of both backends, against swift-metrics' test kit and a W3C test tracer.
        // A target of its own: both systems are bootstrapped once per process, which would change
        // what the other suites observe.
        .testTarget(
            name: "EventBusObservabilityTests",
            dependencies: [
                "EventBus",
                "EventBusJetStream",
                "NATS",
                "NATSTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ]
        ),
        // Settings from the environment and the one factory that switches backends.
        .target(
            name: "EventBusBootstrap",
            dependencies: [
                "EventBus",
                "EventBusJetStream",
                "NATS",
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "EventBusBootstrapTests",
            dependencies: [
                "EventBusBootstrap",
                "NATSTestSupport",
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // `eventbus-demo`: an order workflow on the bus, in one process or one role per process.
        .executableTarget(
            name: "EventBusDemo",
            dependencies: [
                "EventBus",
                "EventBusBootstrap",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ]
        ),
        // `eventbus`: publish, subscribe, request, streams and consumers, doctor, bench.
        .executableTarget(
            name: "EventBusCLI",
            dependencies: [
                "EventBus",
                "EventBusBootstrap",
                "EventBusJetStream",
                "NATS",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "EventBusDemoTests",
            dependencies: ["NATSTestSupport", "NATS"]
        ),
        // Reliability under faults (issue 8): a Jepsen-style history checker and JetStream probes,
        // the service processes of the multi-host test, and the fault tests themselves.
        .target(
            name: "EventBusReliabilitySupport",
            dependencies: ["EventBus", "EventBusJetStream", "NATS"],
            path: "Tests/EventBusReliabilitySupport"
        ),
        .executableTarget(
            name: "EventBusReliabilityAgent",
            dependencies: [
                "EventBus",
                "EventBusBootstrap",
                "EventBusJetStream",
                "EventBusReliabilitySupport",
                "NATS",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/EventBusReliabilityAgent"
        ),
        .testTarget(
            name: "EventBusReliabilityTests",
            dependencies: [
                "EventBus",
                "EventBusJetStream",
                "EventBusReliabilitySupport",
                // Not linked for its code: the dependency makes `swift test` build the agent binary
                // that the multi-host test starts inside network namespaces.
                "EventBusReliabilityAgent",
                "NATS",
                "NATSTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
