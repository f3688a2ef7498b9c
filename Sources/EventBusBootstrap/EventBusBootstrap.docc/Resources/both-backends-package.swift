// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "billing",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: "../swift-nats-eventbus"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
    ],
    targets: [
        .target(
            name: "Billing",
            dependencies: [.product(name: "EventBus", package: "swift-nats-eventbus")]
        ),
        .executableTarget(
            name: "billing-service",
            dependencies: [
                "Billing",
                .product(name: "EventBusBootstrap", package: "swift-nats-eventbus"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "BillingTests",
            dependencies: ["Billing", .product(name: "EventBus", package: "swift-nats-eventbus")]
        ),
    ]
)
