import Benchmark
import BenchmarkSupport
import CNATSRaw
import NATS

// W3: 20,000 sequential requests of 128 bytes to an echo responder in the same process (its own
// connection). Every round trip is timed; the iteration reports its p50 and p99 and hands every
// sample to the tool's histogram. Raw's responder connection uses SendAsap, so that its replies
// leave at once instead of after cnats's flusher's 1 ms wait (what a careful C program does); the
// NATS module's responder uses the default configuration, whose replies leave at once because
// they follow a quiet spell (NATSConnectionConfiguration.writeImmediatelyAfterIdle).
//
// Raw cnats replies from the subscription's callback and requests with natsConnection_Request
// (which writes the request at once and blocks the calling thread). The NATS variants differ in
// the requester's connection (default or SendAsap) and in how the responder answers (a handler
// on the delivery thread, or a task iterating the subscription); see registerW3NATS.

private let subject = "bench.w3"

/// The raw responder: echoes the payload to the reply subject from the delivery thread.
private let rawEcho: natsMsgHandler = { connection, _, message, _ in
    natsConnection_Publish(
        connection, natsMsg_GetReply(message), UnsafeRawPointer(natsMsg_GetData(message)), natsMsg_GetDataLength(message))
    // The message is ours once handed to the callback.
    natsMsg_Destroy(message)
}

/// The NATS module's iterating responder: a task that answers every request until the connection
/// closes.
private func echo(_ requests: NATSSubscription, on connection: NATSConnection) async {
    do {
        for try await request in requests {
            guard let replyTo = request.replyTo else { continue }
            try connection.publish(subject: replyTo, payload: request.payload)
        }
    } catch {
        // The benchmark's requests time out and fail it; nothing to add here.
    }
}

func registerW3() {
    let configuration = BenchmarkSettings.live(metrics: BenchmarkMetrics.latencyWorkload)

    let raw = SetupBox<(server: BenchmarkServer, requester: RawConnection, responder: RawConnection, subscription: OpaquePointer, subject: RawCString)>()
    Benchmark("W3 raw", configuration: configuration) { benchmark in
        let (_, requester, _, _, subject) = raw.unwrapped
        var recorder = LatencyRecorder(capacity: Workload.w3Requests)
        let failure: natsStatus = Workload.payload.withUnsafeBytes { payload in
            for _ in 0..<Workload.w3Requests {
                var reply: OpaquePointer?
                let start = Clocks.monotonicNanos()
                let status = natsConnection_Request(
                    &reply, requester.pointer, subject.pointer, payload.baseAddress, Int32(payload.count), 5_000)
                let end = Clocks.monotonicNanos()
                if status != NATS_OK { return status }
                // The reply is handed to us.
                natsMsg_Destroy(reply)
                recorder.record(nanos: end - start)
            }
            return NATS_OK
        }
        recorder.stop()
        benchmark.stopMeasurement()
        if failure != NATS_OK {
            benchmark.error("natsConnection_Request: \(String(cString: natsStatus_GetText(failure)))")
            return
        }
        recorder.finish(benchmark)
    } setup: {
        let server = try BenchmarkServer.start()
        let requester = try RawConnection(url: server.url)
        let responder = try RawConnection(url: server.url, sendAsap: true)
        let subject = RawCString(subject)
        var subscription: OpaquePointer?
        try rawCheck(natsConnection_Subscribe(&subscription, responder.pointer, subject.pointer, rawEcho, nil), "natsConnection_Subscribe")
        try responder.flush()
        raw.value = (server, requester, responder, subscription!, subject)
    } teardown: {
        if let value = raw.value {
            natsSubscription_Unsubscribe(value.subscription)
            // Unsubscribed above; this frees the subscription object.
            natsSubscription_Destroy(value.subscription)
            value.server.stop()
        }
        raw.value = nil
    }

    registerW3NATS(name: "W3 NATS", configuration: configuration, requesterSendsAsap: false, iteratorResponder: false)
    registerW3NATS(
        name: "W3 NATS send-asap requester", configuration: configuration, requesterSendsAsap: true, iteratorResponder: false)
    registerW3NATS(
        name: "W3 NATS iterator responder", configuration: configuration, requesterSendsAsap: false, iteratorResponder: true)
    registerW3NATS(
        name: "W3 NATS iterator responder on delivery thread", configuration: configuration, requesterSendsAsap: false,
        iteratorResponder: true, onDeliveryThread: true)
}

/// The NATS module's W3. The responder's connection uses the default configuration and answers
/// with a plain publish from a handler subscription on the delivery thread (as raw's callback
/// does), or, with `iteratorResponder`, from a task iterating the subscription (one that prefers
/// the subscription's `deliveryExecutor` with `onDeliveryThread`). The requester uses the default
/// configuration, or SendAsap.
private func registerW3NATS(
    name: String,
    configuration: Benchmark.Configuration,
    requesterSendsAsap: Bool,
    iteratorResponder: Bool,
    onDeliveryThread: Bool = false
) {
    let module = SetupBox<(server: BenchmarkServer, requester: NATSConnection, responder: NATSConnection, echo: Task<Void, Never>?, handler: NATSHandlerSubscription?)>()
    Benchmark(name, configuration: configuration) { benchmark in
        let (_, requester, _, _, _) = module.unwrapped
        var recorder = LatencyRecorder(capacity: Workload.w3Requests)
        let payload = Workload.payload
        do {
            for _ in 0..<Workload.w3Requests {
                let start = Clocks.monotonicNanos()
                let reply = try await requester.request(subject: subject, payload: payload, timeout: .seconds(5))
                let end = Clocks.monotonicNanos()
                blackHole(reply)
                recorder.record(nanos: end - start)
            }
        } catch {
            benchmark.error("request: \(error)")
            return
        }
        recorder.stop()
        benchmark.stopMeasurement()
        recorder.finish(benchmark)
    } setup: {
        let server = try BenchmarkServer.start()
        let requester = try await NATSConnection.connectForBenchmark(server, sendAsap: requesterSendsAsap)
        let responder = try await NATSConnection.connectForBenchmark(server, sendAsap: false)
        if iteratorResponder {
            let requests = try await responder.subscribe(to: subject)
            let task =
                onDeliveryThread
                ? Task(executorPreference: requests.deliveryExecutor) { await echo(requests, on: responder) }
                : Task { await echo(requests, on: responder) }
            module.value = (server, requester, responder, task, nil)
        } else {
            let handler = try await responder.subscribe(to: subject) { request in
                guard let replyTo = request.replyTo else { return }
                try? responder.publish(subject: replyTo, payload: request.payload)
            }
            module.value = (server, requester, responder, nil, handler)
        }
    } teardown: {
        if let value = module.value {
            value.handler?.unsubscribe()
            await value.responder.close()
            await value.echo?.value
            await value.requester.close()
            value.server.stop()
        }
        module.value = nil
    }
}
