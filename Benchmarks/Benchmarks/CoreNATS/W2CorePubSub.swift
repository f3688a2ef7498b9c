import Benchmark
import BenchmarkSupport
import CNATSRaw
import NATS
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// W2: core publish of 1,000,000 messages of 128 bytes with one subscriber in the same process
// (its own connection). The iteration ends when the subscriber has counted every message; a
// message dropped as a slow consumer fails the benchmark instead of being measured as received.
// Each iteration subscribes anew (unmeasured, interest confirmed by a flush) so no message of
// one iteration can be counted in the next.
//
// Both measured variants let the subscription hold a whole iteration (1,000,000 messages), so
// that what is compared is the cost of receiving, not who drops first. With the default limits
// (65,536 messages) the NATS module's subscriber falls behind and cnats drops most messages;
// "W2 NATS default limits" records how many arrive instead of failing, to keep that visible.

private let subject = "bench.w2"

/// Pending limits that hold one whole iteration.
private let iterationLimits = NATSConnectionConfiguration.SubscriptionLimits(
    messages: Workload.w2Messages, bytes: 1 << 30)

/// Messages that arrived in one iteration (of `Workload.w2Messages`).
private let receivedMessages = BenchmarkMetric.custom("receivedMessages", polarity: .prefersLarger, useScalingFactor: false)

/// What the raw callback counts into: plain C-style state behind the callback's closure pointer
/// (no reference counting per message).
private struct RawCounterState {
    var received = 0
    let target: Int
    var done = sem_t()
}

private let rawCount: natsMsgHandler = { _, _, message, closure in
    // The message is ours; counting is all this subscriber does.
    natsMsg_Destroy(message)
    let state = closure!.assumingMemoryBound(to: RawCounterState.self)
    state.pointee.received += 1
    if state.pointee.received == state.pointee.target { sem_post(&state.pointee.done) }
}

private let rawCountComplete: natsOnCompleteCB = { closure in
    // cnats's last call for the subscription: nothing touches the counter after this.
    let state = closure!.assumingMemoryBound(to: RawCounterState.self)
    sem_destroy(&state.pointee.done)
    state.deinitialize(count: 1)
    state.deallocate()
}

/// Waits for the semaphore in steps, giving up when messages were dropped or time ran out.
private func rawWait(_ state: UnsafeMutablePointer<RawCounterState>, subscription: OpaquePointer) -> String? {
    let deadline = Clocks.monotonicNanos() + UInt64(Workload.receiveTimeout.components.seconds) * 1_000_000_000
    while true {
        var until = timespec()
        clock_gettime(CLOCK_REALTIME, &until)
        until.tv_nsec += 200_000_000
        if until.tv_nsec >= 1_000_000_000 {
            until.tv_sec += 1
            until.tv_nsec -= 1_000_000_000
        }
        if sem_timedwait(&state.pointee.done, &until) == 0 { return nil }
        var dropped: Int64 = 0
        _ = natsSubscription_GetDropped(subscription, &dropped)
        if dropped > 0 || Clocks.monotonicNanos() > deadline {
            return "received \(state.pointee.received) of \(state.pointee.target), dropped \(dropped) (slow consumer)"
        }
    }
}

func registerW2() {
    let configuration = BenchmarkSettings.live(metrics: BenchmarkMetrics.throughputWorkload, scalingFactor: .mega)

    let raw = SetupBox<(server: BenchmarkServer, publisher: RawConnection, subscriber: RawConnection, subject: RawCString)>()
    Benchmark("W2 raw", configuration: configuration) { benchmark in
        let (_, publisher, subscriber, subject) = raw.unwrapped
        let messages = Workload.w2Messages
        let state = UnsafeMutablePointer<RawCounterState>.allocate(capacity: 1)
        state.initialize(to: RawCounterState(target: messages))
        sem_init(&state.pointee.done, 0, 0)
        var subscription: OpaquePointer?
        var status = natsConnection_Subscribe(&subscription, subscriber.pointer, subject.pointer, rawCount, state)
        if status != NATS_OK {
            // No subscription: the counter is still ours.
            sem_destroy(&state.pointee.done)
            state.deallocate()
        } else {
            // From here on the completion callback frees the counter.
            status = natsSubscription_SetOnCompleteCB(subscription, rawCountComplete, state)
            if status != NATS_OK {
                // The delivery thread may hold the counter: leak it rather than free it under it.
                natsSubscription_Unsubscribe(subscription)
                natsSubscription_Destroy(subscription)
            }
        }
        guard status == NATS_OK, let subscription else {
            benchmark.error("subscribing: \(String(cString: natsStatus_GetText(status)))")
            return
        }
        defer {
            natsSubscription_Unsubscribe(subscription)
            natsSubscription_Destroy(subscription)
        }
        do throws(RawFailure) {
            try rawCheck(
                natsSubscription_SetPendingLimits(subscription, Int32(iterationLimits.messages), Int32(iterationLimits.bytes)),
                "natsSubscription_SetPendingLimits")
            try subscriber.flush()
            benchmark.startMeasurement()
            let meter = ThroughputMeter()
            let published = Workload.payload.withUnsafeBytes { payload in
                for _ in 0..<messages {
                    let status = natsConnection_Publish(publisher.pointer, subject.pointer, payload.baseAddress, Int32(payload.count))
                    if status != NATS_OK { return status }
                }
                return NATS_OK
            }
            try rawCheck(published, "natsConnection_Publish")
            if let failure = rawWait(state, subscription: subscription) {
                benchmark.error(failure)
                return
            }
            meter.finish(benchmark, operations: messages)
            benchmark.stopMeasurement()
        } catch {
            benchmark.error(error.description)
        }
    } setup: {
        let server = try BenchmarkServer.start()
        raw.value = (server, try RawConnection(url: server.url), try RawConnection(url: server.url), RawCString(subject))
    } teardown: {
        raw.value?.server.stop()
        raw.value = nil
    }

    registerW2NATS(name: "W2 NATS", limits: iterationLimits, configuration: configuration, requireAll: true)
    // The same with the publish loop on a thread of its own: package-benchmark holds one of the
    // two pool threads, and a loop that never suspends holds the other, so the consuming task can
    // only start once every message is published (raw's consumer is cnats's delivery thread,
    // which runs all along). In a service the publisher and the consumer each get a pool thread.
    registerW2NATS(
        name: "W2 NATS publisher thread", limits: iterationLimits, configuration: configuration, requireAll: true,
        publisherThread: true)
    registerW2NATS(
        name: "W2 NATS default limits", limits: nil,
        configuration: BenchmarkSettings.live(
            metrics: BenchmarkMetrics.throughputWorkload + [receivedMessages], scalingFactor: .mega),
        requireAll: false)
    registerW2NATSHandler(configuration: configuration)
}

/// The NATS module's W2 with a handler subscription: a closure on cnats's delivery thread counts,
/// as raw's callback does (the module still copies each message out of cnats first).
private func registerW2NATSHandler(configuration: Benchmark.Configuration) {
    final class Counter: Sendable {
        let received = Atomic<Int>(0)
        let done = AsyncSignal()
    }
    liveBenchmark("W2 NATS handler", configuration: configuration) { benchmark, module in
        let (publisher, subscriber) = module
        let messages = Workload.w2Messages
        let counter = Counter()
        let subscription = try await subscriber.subscribe(to: subject, limits: iterationLimits) { message in
            blackHole(message)
            if counter.received.add(1, ordering: .relaxed).newValue == messages { counter.done.signal() }
        }
        defer { subscription.unsubscribe() }
        try await subscriber.flush()
        benchmark.startMeasurement()
        let meter = ThroughputMeter()
        let payload = Workload.payload
        for _ in 0..<messages {
            try publisher.publish(subject: subject, payload: payload)
        }
        let watchdog = startWatchdog(progress: { counter.received.load(ordering: .relaxed) }, onStall: { counter.done.fail() })
        let arrived = await counter.done.wait()
        watchdog.cancel()
        guard arrived else {
            benchmark.error(
                "received \(counter.received.load(ordering: .relaxed)) of \(messages), dropped \(subscription.droppedCount) (slow consumer)")
            return
        }
        meter.finish(benchmark, operations: messages)
        benchmark.stopMeasurement()
    } setup: { server -> (publisher: NATSConnection, subscriber: NATSConnection) in
        (try await NATSConnection.connectForBenchmark(server), try await NATSConnection.connectForBenchmark(server))
    } teardown: { module in
        await module.publisher.close()
        await module.subscriber.close()
    }
}

/// The NATS module's W2. With `requireAll` a lost message fails the benchmark; without, the
/// iteration records how many arrived (and its rate) and goes on.
private func registerW2NATS(
    name: String,
    limits: NATSConnectionConfiguration.SubscriptionLimits?,
    configuration: Benchmark.Configuration,
    requireAll: Bool,
    publisherThread: Bool = false
) {
    let module = SetupBox<
        (server: BenchmarkServer, publisher: NATSConnection, subscriber: NATSConnection, publishing: ThreadTaskExecutor?)
    >()
    Benchmark(name, configuration: configuration) { benchmark in
        let (_, publisher, subscriber, publishing) = module.unwrapped
        let messages = Workload.w2Messages
        do {
            let subscription = try await subscriber.subscribe(to: subject, limits: limits)
            benchmark.startMeasurement()
            let meter = ThroughputMeter()
            let consumer = Task { () throws(NATSError) -> Int in
                var received = 0
                for try await message in subscription {
                    blackHole(message)
                    received += 1
                    if received == messages { break }
                }
                return received
            }
            // Ends the consumer's sequence if cnats drops messages or time runs out, so that a
            // lost message fails the iteration instead of hanging it.
            let watchdog = requireAll ? Task { () -> Int64 in
                let deadline = ContinuousClock.now + Workload.receiveTimeout
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(200))
                    let dropped = subscription.droppedCount
                    if dropped > 0 || ContinuousClock.now > deadline {
                        subscription.unsubscribe()
                        return dropped
                    }
                }
                return 0
            } : nil
            let payload = Workload.payload
            if let publishing {
                // The loop on a thread of its own, leaving the pool thread to the consumer.
                try await withTaskExecutorPreference(publishing) { () throws(NATSError) in
                    for _ in 0..<messages {
                        try publisher.publish(subject: subject, payload: payload)
                    }
                }
            } else {
                for _ in 0..<messages {
                    try publisher.publish(subject: subject, payload: payload)
                }
            }
            if !requireAll {
                // Wait until cnats has accounted for every message (handed over or dropped),
                // then let the consumer take what was handed over and end.
                try await publisher.flush()
                let deadline = ContinuousClock.now + Workload.receiveTimeout
                while subscription.deliveredCount + subscription.droppedCount < Int64(messages), ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(5))
                }
                subscription.drain()
            }
            let received = try await consumer.value
            watchdog?.cancel()
            if !requireAll {
                benchmark.measurement(receivedMessages, received)
            } else if received != messages {
                let dropped = await watchdog?.value ?? 0
                benchmark.error("received \(received) of \(messages), dropped at least \(dropped) (slow consumer)")
                return
            }
            meter.finish(benchmark, operations: received)
            benchmark.stopMeasurement()
        } catch {
            benchmark.error("\(error)")
        }
    } setup: {
        let server = try BenchmarkServer.start()
        module.value = (
            server, try await NATSConnection.connectForBenchmark(server), try await NATSConnection.connectForBenchmark(server),
            publisherThread ? ThreadTaskExecutor(name: "w2-publisher") : nil
        )
    } teardown: {
        await module.value?.publisher.close()
        await module.value?.subscriber.close()
        module.value?.publishing?.shutdown()
        module.value?.server.stop()
        module.value = nil
    }
}
