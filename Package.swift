// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "swift-nats-eventbus",
    platforms: [.macOS(.v15)],
    products: [
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.0.0", traits: []),
    ],
    targets: [
        // cnats, the NATS C client (Debian/Ubuntu: libnats-dev). Only Sources/NATS/Native/ imports it.
        .systemLibrary(
            name: "CNATS",
            pkgConfig: "libnats",
            providers: [.apt(["libnats-dev"])]
        ),
    ],
    swiftLanguageModes: [.v6]
)
