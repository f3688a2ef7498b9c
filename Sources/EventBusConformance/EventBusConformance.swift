#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import EventBus
import Testing

/// The behaviour suite every `EventBus` backend must pass.
///
/// Run it from any Swift Testing target, one test case per check:
///
/// ```swift
/// @Test(arguments: EventBusConformance.checks)
/// func conformance(_ check: EventBusConformance.Check) async throws {
///     try await EventBusConformance.run(check, harness: myHarness, size: .short)
/// }
/// ```
///
/// A check whose ``Check/requires`` capabilities the backend does not declare is skipped (the test case
/// is cancelled with a comment naming the missing capability); every other check runs and can fail.
public enum EventBusConformance {
    /// Every check, in a stable order.
    public static let checks: [Check] =
        publishSubscribeChecks + acknowledgementChecks + groupChecks + lifecycleChecks + deadLetterChecks
        + deadLetterQueueChecks + requestReplyChecks + persistenceChecks + validationChecks + handBackChecks
        + consumeHandlingChecks

    /// Runs one check against a fresh bus from `harness`, then tears the bus down.
    public static func run(_ check: Check, harness: EventBusConformanceHarness, size: Size) async throws {
        let bus = try await harness.makeBus()
        let missing = check.requires.subtracting(bus.capabilities)
        if !missing.isEmpty {
            try await harness.teardown(bus)
            // A warning shows in every reporter's output; the cancellation marks the case as not run.
            let reason = "skipped '\(check.name)': the backend does not declare \(missing)"
            Issue.record(Comment(rawValue: reason), severity: .warning)
            try Test.cancel(Comment(rawValue: reason))
        }
        let context = CheckContext(
            bus: bus, harness: harness, size: size,
            prefix: "\(harness.subjectPrefix).\(UUID().uuidString.prefix(8).lowercased())"
        )
        let closeEverything: @Sendable () async -> Void = {
            for client in context.extraClients.all {
                await client.close()
            }
            await bus.close()
        }
        do {
            try await withTimeLimit(harness.timing.checkTimeout, "check '\(check.name)'", onTimeout: closeEverything) {
                try await check.body(context)
            }
        } catch {
            for client in context.extraClients.all {
                await client.close()
            }
            try? await harness.teardown(bus)
            throw error
        }
        for client in context.extraClients.all {
            await client.close()
        }
        try await harness.teardown(bus)
    }

    /// Runs every check one after another, for a test that prefers one case (skipped checks are noted, not
    /// cancelled, so the rest still run).
    public static func runAll(harness: EventBusConformanceHarness, size: Size) async throws {
        let probe = try await harness.makeBus()
        let capabilities = probe.capabilities
        try await harness.teardown(probe)
        for check in checks {
            let missing = check.requires.subtracting(capabilities)
            if !missing.isEmpty {
                Issue.record("skipped '\(check.name)': the backend does not declare \(missing)", severity: .warning)
                continue
            }
            try await run(check, harness: harness, size: size)
        }
    }
}
