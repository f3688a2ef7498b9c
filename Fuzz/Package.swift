// swift-tools-version: 6.2
// libFuzzer targets over the parsers and validators that read untrusted bytes: subjects and
// header fields, server URLs, header blocks, JetStream ack subjects and publish acks, and
// CloudEvents messages. A nested package, so that the library's build never needs the fuzzer
// runtime. Build and run them with Fuzz/run.sh (see its header).
//
// Each target is an executable whose main hands its `LLVMFuzzerTestOneInput` to libFuzzer's
// driver (SwiftPM renames every executable's entry point, so libFuzzer's own main cannot be used).
// The targets use `@testable import`: the parsers are internal to the root package, and a
// `package` declaration is not visible here (SwiftPM gives each package its own package name).
// run.sh builds with `-enable-testing` for that reason.
import PackageDescription

let fuzzTargets = ["FuzzValidation", "FuzzServerURL", "FuzzHeaderBlock", "FuzzJetStreamAck", "FuzzCloudEvents"]

let package = Package(
    name: "Fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "swift-nats-eventbus", path: "..")
    ],
    targets: [
        // The invariant check every target shares: print what failed, then abort so that
        // libFuzzer keeps the input as a crash artifact.
        .target(name: "FuzzSupport", dependencies: ["CLibFuzzer"]),
        // The declaration of libFuzzer's driver (the library itself comes with -sanitize=fuzzer).
        .target(name: "CLibFuzzer"),
    ]
        + fuzzTargets.map { name in
            .executableTarget(
                name: name,
                dependencies: [
                    "FuzzSupport",
                    .product(name: "NATS", package: "swift-nats-eventbus"),
                    .product(name: "EventBus", package: "swift-nats-eventbus"),
                    .product(name: "EventBusJetStream", package: "swift-nats-eventbus"),
                ]
            )
        },
    swiftLanguageModes: [.v6]
)
