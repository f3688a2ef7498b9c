import Foundation
import Testing

@testable import NATS

/// The idle rule's clock: the cycle counter only where the kernel keeps time with it, and then
/// at the rate `CLOCK_MONOTONIC` measures.
@Suite("Idle rule clock")
struct NativeIdleClockTests {
    @Test func theCycleCounterIsUsedExactlyWhereTheKernelKeepsTimeWithIt() {
        #if arch(x86_64) && os(Linux)
        let kernelUsesTSC = NativeIdleClock.kernelClocksource() == "tsc"
        #expect(NativeIdleClock.process.usesCycleCounter == kernelUsesTSC, "clocksource \(NativeIdleClock.kernelClocksource() ?? "unknown")")
        #else
        #expect(!NativeIdleClock.process.usesCycleCounter)
        #endif
    }

    /// Over 50 ms, the calibrated counter and `CLOCK_MONOTONIC` agree within 2%: the 20 µs gap
    /// means 20 µs.
    @Test func theCalibratedRateMeasuresTimeAsTheMonotonicClockDoes() throws {
        #if arch(x86_64)
        let clock = try NativeIdleClock.process.usesCycleCounter ? .process : #require(NativeIdleClock.calibrated(over: 2_000_000))
        let startTicks = NativeIdleClock.now(cycleCounter: true)
        let startNanoseconds = NativeIdleClock.monotonicNanoseconds()
        Thread.sleep(forTimeInterval: 0.05)
        let elapsedTicks = NativeIdleClock.now(cycleCounter: true) - startTicks
        let elapsedNanoseconds = NativeIdleClock.monotonicNanoseconds() - startNanoseconds
        let measured = Double(elapsedTicks) / clock.ticksPerNanosecond!
        #expect(abs(measured - Double(elapsedNanoseconds)) / Double(elapsedNanoseconds) < 0.02, "\(measured) ns by the counter, \(elapsedNanoseconds) ns by the clock")
        #endif
    }

    @Test func gapsConvertToTheClocksUnits() {
        #expect(NativeIdleClock.monotonic.ticks(forNanoseconds: 20_000) == 20_000)
        #expect(NativeIdleClock.monotonic.ticks(forNanoseconds: 0) == 1)
        let counter = NativeIdleClock(ticksPerNanosecond: 2.5)
        #expect(counter.ticks(forNanoseconds: 20_000) == 50_000)
        #expect(counter.ticks(forNanoseconds: .max) == .max)
        #expect(counter.ticks(forNanoseconds: 0) == 1)
    }

    /// A rate outside 10 MHz-100 GHz, or no reading, is refused: the connection then reads
    /// `clock_gettime`.
    @Test func aCalibrationOverOneMillisecondGivesAPlausibleRate() throws {
        #if arch(x86_64)
        let clock = try #require(NativeIdleClock.calibrated(over: 1_000_000))
        #expect((0.01...100).contains(clock.ticksPerNanosecond!))
        #endif
    }
}
