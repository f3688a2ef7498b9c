import ArgumentParser
import EventBus
import EventBusBootstrap
import EventBusJetStream
import Foundation
import Histogram
import NATS
import Synchronization

extension EventBusCLI {
    struct Bench: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Publish events through the bus and report the rate and latency (a quick check, not the benchmark suite).",
            discussion: """
                On JetStream the events go to a stream of the bench's own (EVENTBUS_BENCH_<random>, \
                subjects _eventbus_bench.<random>.>, with the configured storage and replicas), which \
                is removed at the end, also when the bench is interrupted: the bus's stream and its \
                consumers see nothing. A progress bar is drawn on standard error when it is a terminal.
                """)
        @OptionGroup var bus: BusOptions
        @Option(help: "How many events (at least 1).") var count = 10_000
        @Option(help: "Concurrent publishers, 1 to \(Self.maxConcurrency) (no more than --count are started).") var concurrency = 1
        @Option(help: "Payload bytes, 0 to \(Self.maxSize) (and at most the server's max payload).") var size = 128

        static let maxConcurrency = 1_024
        static let maxSize = 64 * 1024 * 1024

        func validate() throws {
            if count < 1 { throw ValidationError("--count \(count): publish at least 1 event") }
            if concurrency < 1 || concurrency > Self.maxConcurrency {
                throw ValidationError("--concurrency \(concurrency): use 1 to \(Self.maxConcurrency) publishers")
            }
            if size < 0 || size > Self.maxSize { throw ValidationError("--size \(size): use 0 to \(Self.maxSize) bytes") }
        }

        /// What the publishers share: how many events are stored, and their latencies.
        final class Tally: Sendable {
            /// The longest latency the histogram tells apart; longer ones count as this.
            static let longestLatencyNanos: UInt64 = 60_000_000_000

            let published = Atomic<Int>(0)
            let started = Atomic<Bool>(false)
            /// One histogram for every publisher, its range fixed (1 ns to 60 s, three significant
            /// digits: about 230 KB) so that recording never resizes it. An auto-resizing histogram
            /// per publisher grew its counts element by element through unspecialised generic code:
            /// with 1,024 publishers that took three quarters of the process's CPU, delayed the
            /// first publishes by seconds and reported a fraction of the bus's real rate. Recording
            /// takes the lock for tens of nanoseconds, against a publish's tens of microseconds.
            let latencies = Mutex(
                Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: longestLatencyNanos, numberOfSignificantValueDigits: .three))

            /// Counts one stored event and the time its publish took.
            func record(_ latency: Duration) {
                let nanos = UInt64(clamping: nanoseconds(latency))
                latencies.withLock { _ = $0.record(min(nanos, Self.longestLatencyNanos)) }
                published.add(1, ordering: .relaxed)
            }
        }

        func run() async throws {
            let settings = try bus.settings()
            var benchSettings = settings
            let token = String(format: "%08X", UInt32.random(in: .min ... .max))
            let benchStream = "EVENTBUS_BENCH_\(token)"
            if settings.backend == .jetstream {
                benchSettings.jetStream.streamName = benchStream
                benchSettings.jetStream.subjectPrefix = "_eventbus_bench.\(token.lowercased())"
                benchSettings.jetStream.streamSubjects = nil
                benchSettings.jetStream.streamUpdatePolicy = .never
                // A bench killed before it could remove its stream leaves one that empties itself.
                benchSettings.jetStream.maxAge = .seconds(3_600)
            }
            let publishers = min(concurrency, count)
            let (count, size) = (self.count, self.size)
            let tally = Tally()
            let progress = isTerminal(STDERR_FILENO) ? ProgressBar(total: count, done: { tally.published.load(ordering: .relaxed) }) : nil
            let elapsed: Duration
            do {
                elapsed = try await EventBusFactory.withEventBus(settings: benchSettings, logger: bus.logger()) { eventBus in
                    tally.started.store(true, ordering: .relaxed)
                    return try await withThrowingTaskGroup(of: Void.self) { drawing in
                        if let progress { drawing.addTask { await progress.run() } }
                        let started = ContinuousClock.now
                        try await Self.publish(eventBus, count: count, publishers: publishers, size: size, tally: tally)
                        let elapsed = ContinuousClock.now - started
                        drawing.cancelAll()
                        return elapsed
                    }
                }
            } catch {
                var removal: String?
                if settings.backend == .jetstream && tally.started.load(ordering: .relaxed) {
                    removal = await removeStream(benchStream, settings)
                }
                if error is CancellationError {
                    throw CLIError(
                        .interrupted,
                        "bench interrupted after \(Human.count(tally.published.load(ordering: .relaxed))) events" + (removal.map { "; \($0)" } ?? ""),
                        code: "interrupted")
                }
                if let removal { FileHandle.standardError.write(Data("eventbus: \(shown(removal))\n".utf8)) }
                throw error
            }
            var removal: String?
            if settings.backend == .jetstream { removal = await removeStream(benchStream, settings) }
            report(elapsed: elapsed, publishers: publishers, tally: tally, stream: settings.backend == .jetstream ? benchStream : nil, removal: removal)
        }

        /// `count` events from `publishers` tasks, as evenly as they divide.
        static func publish(_ eventBus: any EventBus, count: Int, publishers: Int, size: Int, tally: Tally) async throws {
            let payload = [UInt8](repeating: 0x61, count: size)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for publisher in 0..<publishers {
                    let share = count / publishers + (publisher < count % publishers ? 1 : 0)
                    group.addTask {
                        for index in 0..<share {
                            let begin = ContinuousClock.now
                            try await eventBus.publish(
                                Event(subject: "bench.\(publisher)", type: "bench", source: "/eventbus-cli", data: payload, extensions: ["n": "\(index)"]))
                            tally.record(ContinuousClock.now - begin)
                        }
                    }
                }
                try await group.waitForAll()
            }
        }

        /// Removes the bench's stream; returns what happened, for the report.
        func removeStream(_ name: String, _ settings: EventBusSettings) async -> String {
            do {
                let connection = try await NATSConnection.connect(configuration: settings.jetStream.connection, logger: bus.logger())
                do {
                    try await connection.jetStream().deleteStream(name)
                } catch where isJetStreamError(error, NATSJetStreamErrorCode.streamNotFound) {
                    // Never created: nothing to remove.
                } catch {
                    await connection.close()
                    throw error
                }
                await connection.close()
                return "stream \(name) removed"
            } catch {
                return "could not remove stream \(name): \(CLIError(classifying: error).message) (it drops its events after 1 h; remove it with `nats stream rm \(name)`)"
            }
        }

        func report(elapsed: Duration, publishers: Int, tally: Tally, stream: String?, removal: String?) {
            let histogram = tally.latencies.withLock { $0 }
            let events = tally.published.load(ordering: .relaxed)
            let seconds = max(Double(nanoseconds(elapsed)) / 1e9, 1e-9)
            let rate = Double(events) / seconds
            let megabytes = Double(events * size) / seconds / 1e6
            let percentiles: [(String, String, Double)] = [("p50", "p50", 50), ("p90", "p90", 90), ("p99", "p99", 99), ("p99.9", "p99_9", 99.9)]
            // `count`: the latencies recorded, one per stored event.
            var latency: JSONObject = ["count": .int(histogram.totalCount), "min": .int(histogram.min)]
            for (_, key, percentile) in percentiles { latency[key] = .int(histogram.valueAtPercentile(percentile)) }
            latency["max"] = .int(histogram.max)
            latency["mean"] = .number(histogram.mean)
            let target = stream.map { "stream \($0)" } ?? "the in-memory bus"
            let text = """
                published \(Human.count(events)) events of \(Human.bytes(size)) with \(publishers) publisher(s) to \(target) in \(Human.duration(elapsed))
                rate     \(Human.significant(rate)) events/s, \(Human.significant(megabytes)) MB/s
                latency  min \(Human.duration(nanoseconds: Double(histogram.min))), \(percentiles.map { "\($0.0) \(Human.duration(nanoseconds: Double(histogram.valueAtPercentile($0.2))))" }.joined(separator: ", ")), max \(Human.duration(nanoseconds: Double(histogram.max)))
                """ + (removal.map { "\n\(shown($0))" } ?? "")
            bus.output.emit(
                text,
                [
                    "events": .int(events), "size": .int(size), "publishers": .int(publishers), "concurrency": .int(concurrency),
                    "backend": .string(stream == nil ? "memory" : "jetstream"), "stream": .optional(stream),
                    "stream_removed": stream == nil ? .null : .bool(removal?.hasSuffix("removed") == true),
                    "elapsed_ns": .nanoseconds(elapsed), "events_per_second": .number(rate), "megabytes_per_second": .number(megabytes),
                    "latency_ns": .object(latency),
                ])
        }
    }
}

/// Whole nanoseconds of a duration.
func nanoseconds(_ duration: Duration) -> Int64 {
    let (seconds, attoseconds) = duration.components
    return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
}

/// A one-line progress bar on standard error, redrawn ten times a second until its task is
/// cancelled, then erased. Only for a terminal: a pipe or a log file would collect every frame.
struct ProgressBar: Sendable {
    let total: Int
    let done: @Sendable () -> Int
    let width = 30

    func run() async {
        let started = ContinuousClock.now
        while !Task.isCancelled {
            draw(since: started)
            try? await Task.sleep(for: .milliseconds(100))
        }
        draw(since: started)
        // Erases the bar so that the report starts on a clean line.
        write("\r" + String(repeating: " ", count: width + 60) + "\r")
    }

    func draw(since started: ContinuousClock.Instant) {
        let done = min(self.done(), total)
        let filled = total == 0 ? width : done * width / total
        let seconds = Double(nanoseconds(ContinuousClock.now - started)) / 1e9
        let rate = seconds > 0 ? Double(done) / seconds : 0
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        write("\r\(bar) \(String(format: "%3d", total == 0 ? 100 : done * 100 / total))% \(Human.count(done))/\(Human.count(total)) events \(Human.significant(rate)) events/s ")
    }

    private func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}
