import NATS
import NATSTestSupport
import Testing

/// A subscription's `next()` runs on the caller's executor (`nonisolated(nonsending)`): an actor
/// iterating messages already received stays on the actor instead of hopping to the pool and
/// back for each one.
@Suite("Iterating a subscription from an actor", .tags(.server))
struct NATSIterationIsolationTests {
    @Test func anActorIteratingBufferedMessagesStaysOnItsExecutor() async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        let connection = try await connect(to: server)
        let subscription = try await connection.subscribe(to: "isolation.>")
        let count = 200
        for index in 0..<count {
            try connection.publish(subject: "isolation.item", payload: Array("\(index)".utf8))
        }
        try await connection.flush()
        // Everything is in the subscription's buffer before the actor starts reading.
        #expect(await eventually { subscription.deliveredCount == Int64(count) })
        let (received, jobs) = try await CountingActor().run { _ in
            var iterator = subscription.makeAsyncIterator()
            var texts: [String] = []
            while texts.count < count, let message = try await iterator.next() {
                texts.append(String(decoding: message.payload.bytes, as: UTF8.self))
            }
            return texts
        }
        #expect(received == (0..<count).map { "\($0)" })
        // Entering the actor is one job; a `next()` that left it would add one per message.
        #expect(jobs < 20, "\(jobs) jobs enqueued on the actor for \(count) messages")
        subscription.unsubscribe()
        await connection.close()
    }
}
