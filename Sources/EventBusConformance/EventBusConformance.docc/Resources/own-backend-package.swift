// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "my-bus",
    platforms: [.macOS(.v15)],
    products: [.library(name: "MyBus", targets: ["MyBus"])],
    dependencies: [
        .package(path: "../swift-nats-eventbus"),
    ],
    targets: [
        .target(
            name: "MyBus",
            dependencies: [.product(name: "EventBus", package: "swift-nats-eventbus")]
        ),
        .testTarget(
            name: "MyBusTests",
            dependencies: [
                "MyBus",
                .product(name: "EventBusConformance", package: "swift-nats-eventbus"),
            ]
        ),
    ]
)
