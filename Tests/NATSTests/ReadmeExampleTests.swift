import NATS
import NATSTestSupport
import Testing

/// The README's example, run against a real server so that it stays true.
@Suite("README example", .tags(.server))
struct ReadmeExampleTests {
    @Test func twentyLineExampleRuns() async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }

        let configuration = try NATSConnectionConfiguration(servers: [server.url])
        let connection = try await NATSConnection.connect(configuration: configuration)

        let orders = try await connection.subscribe(to: "orders.*", queueGroup: "billing")
        let inventory = try await connection.subscribe(to: "inventory.check") { request in
            guard let replyTo = request.replyTo else { return }
            try? connection.publish(subject: replyTo, payload: "in stock")
        }

        try connection.publish(subject: "orders.created", payload: "order 42", headers: ["Order-Id": "42"])

        let reply = try await connection.request(subject: "inventory.check", payload: Array("sku-1".utf8), timeout: .seconds(2))
        #expect(reply.payload.string == "in stock")

        let seen = try await withDeadline(.seconds(30), "the order on 'orders.created'") {
            var seen: [String] = []
            for try await order in orders {
                seen.append("\(order.subject) \(order.headers["Order-Id"] ?? "-") \(order.payload.string)")
                break
            }
            return seen
        }
        inventory.unsubscribe()
        try await connection.drain()
        #expect(seen == ["orders.created 42 order 42"])
        #expect(connection.isClosed)
    }

    /// "Iterating on the delivery thread": the responder iterating from a task that prefers the
    /// subscription's executor answers requests, and ends when the connection closes.
    @Test func responderIteratingOnTheDeliveryThreadAnswers() async throws {
        let server = try await NATSServerProcess.started(jetStream: false)
        defer { server.kill() }
        let connection = try await NATSConnection.connect(configuration: try NATSConnectionConfiguration(servers: [server.url]))
        let requests = try await connection.subscribe(to: "echo")

        let responder = Task(executorPreference: requests.deliveryExecutor) {
            for try await request in requests {
                guard let replyTo = request.replyTo else { continue }
                try connection.publish(subject: replyTo, payload: request.payload)
            }
        }

        for index in 0..<20 {
            let reply = try await connection.request(subject: "echo", payload: Array("ping \(index)".utf8), timeout: .seconds(5))
            #expect(reply.payload.string == "ping \(index)")
        }
        await connection.close()
        try await withDeadline(.seconds(30), "the responder's loop after close") { try await responder.value }
    }
}
