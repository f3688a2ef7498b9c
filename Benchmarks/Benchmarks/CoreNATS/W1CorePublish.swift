import Benchmark
import BenchmarkSupport
import CNATSRaw
import NATS

// W1: core publish of 1,000,000 messages of 128 bytes, then one flush (a PING/PONG round trip,
// so the iteration ends when the server has processed everything). Messages per second.

private let subject = "bench.w1"

func registerW1() {
    let configuration = BenchmarkSettings.live(metrics: BenchmarkMetrics.throughputWorkload, scalingFactor: .mega)

    let raw = SetupBox<(server: BenchmarkServer, connection: RawConnection, subject: RawCString)>()
    Benchmark("W1 raw", configuration: configuration) { benchmark in
        let (_, connection, subject) = raw.unwrapped
        do throws(RawFailure) {
            let meter = ThroughputMeter()
            let published = Workload.payload.withUnsafeBytes { payload in
                for _ in 0..<Workload.w1Messages {
                    let status = natsConnection_Publish(connection.pointer, subject.pointer, payload.baseAddress, Int32(payload.count))
                    if status != NATS_OK { return status }
                }
                return NATS_OK
            }
            try rawCheck(published, "natsConnection_Publish")
            try connection.flush()
            meter.finish(benchmark, operations: Workload.w1Messages)
        } catch {
            benchmark.error(error.description)
        }
    } setup: {
        let server = try BenchmarkServer.start()
        raw.value = (server, try RawConnection(url: server.url), RawCString(subject))
    } teardown: {
        raw.value?.server.stop()
        raw.value = nil
    }

    registerW1NATS(name: "W1 NATS", configuration: configuration) { _ in }
    // The cost of the idle rule (one clock read per publish): the same with it off.
    registerW1NATS(name: "W1 NATS flusher only", configuration: configuration) { $0.writeImmediatelyAfterIdle = nil }
}

/// The NATS module's W1 with the default configuration changed by `adjust`.
private func registerW1NATS(
    name: String, configuration: Benchmark.Configuration, adjust: @escaping @Sendable (inout NATSConnectionConfiguration) -> Void
) {
    let module = SetupBox<(server: BenchmarkServer, connection: NATSConnection)>()
    Benchmark(name, configuration: configuration) { benchmark in
        let (_, connection) = module.unwrapped
        do throws(NATSError) {
            let meter = ThroughputMeter()
            let payload = Workload.payload
            for _ in 0..<Workload.w1Messages {
                try connection.publish(subject: subject, payload: payload)
            }
            try await connection.flush(timeout: .seconds(10))
            meter.finish(benchmark, operations: Workload.w1Messages)
        } catch {
            benchmark.error("\(error)")
        }
    } setup: {
        let server = try BenchmarkServer.start()
        module.value = (server, try await NATSConnection.connectForBenchmark(server, adjust: adjust))
    } teardown: {
        await module.value?.connection.close()
        module.value?.server.stop()
        module.value = nil
    }
}
