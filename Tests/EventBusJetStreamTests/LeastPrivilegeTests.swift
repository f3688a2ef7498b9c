import EventBus
import EventBusJetStream
import Foundation
import Logging
import NATS
import NATSTestSupport
import Testing

/// The permissions docs/security.md lists for a service are enough for the bus to publish,
/// consume in a group, and send and answer requests; a subject outside them is a
/// `permissionDenied` error naming it, at once, and the bus keeps working.
@Suite("EventBus with least-privilege permissions", .serialized)
struct LeastPrivilegeTests {
    /// docs/security.md, "What the EventBus needs", for a service that publishes `events.orders.>`,
    /// consumes, sends and answers requests; the stream is made by the operator (`admin`).
    static let serverConfiguration = """
        authorization {
          users = [
            { user: admin, password: pw }
            { user: service, password: pw, permissions: {
                publish: { allow: [
                  "$JS.API.INFO", "$JS.API.STREAM.INFO.EVENTS",
                  "events.orders.>",
                  "$JS.API.CONSUMER.CREATE.EVENTS.>", "$JS.API.CONSUMER.INFO.EVENTS.>",
                  "$JS.API.CONSUMER.DELETE.EVENTS.>", "$JS.API.CONSUMER.MSG.NEXT.EVENTS.>", "$JS.ACK.EVENTS.>",
                  "$JS.API.STREAM.MSG.GET.EVENTS",
                  "eventbus-requests.>", "_INBOX.>"
                ] }
                subscribe: { allow: [
                  "_INBOX.>", "eventbus-requests.>", "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.EVENTS.>"
                ] }
            } }
          ]
        }
        """

    private static func bus(user: String, on server: NATSServerProcess) throws -> JetStreamEventBus {
        var connection = try NATSConnectionConfiguration(servers: [server.url])
        connection.authentication = .userPassword(user: user, password: "pw")
        var logger = Logger(label: "least-privilege.\(user)")
        logger.logLevel = .critical
        return JetStreamEventBus(configuration: .init(connection: connection), logger: logger)
    }

    @Test(.tags(.server)) func theDocumentedPermissionsAreEnoughAndOthersAreRefusedByName() async throws {
        let server = try await NATSServerProcess.started(configuration: Self.serverConfiguration)
        let admin = try Self.bus(user: "admin", on: server)
        try await admin.start()  // creates the stream, as an operator would
        await admin.close()

        let bus = try Self.bus(user: "service", on: server)
        try await bus.start()
        let subscription = try await bus.subscribe("orders.>", options: .init(group: "billing", start: .all))
        let receipt = try await bus.publish(Event(subject: "orders.created", type: "order.created", source: "/test"))
        #expect(receipt.duplicate == false)
        // The event and the request are awaited from one iterator; closing the subscription ends a wait
        // for one that never comes.
        try await withDeadline(.seconds(30), "the order event and the quote request", onTimeout: { await subscription.close() }) {
            var iterator = subscription.makeAsyncIterator()
            let delivery = try #require(try await iterator.next())
            #expect(delivery.event.subject == "orders.created")
            try await delivery.ack()

            // A request reaches the group's subscription, which answers it.
            let answering = Task {
                let request = try #require(try await iterator.next())
                try await request.respond(Event(subject: "orders.quote", type: "quote", source: "/test"))
            }
            let reply = try await bus.request(Event(subject: "orders.quote", type: "quote.requested", source: "/test"), timeout: .seconds(5))
            #expect(reply.type == "quote")
            try await answering.value
        }

        // Outside the service's subjects: refused by name, at once; the bus goes on.
        let started = ContinuousClock.now
        do {
            _ = try await bus.publish(Event(subject: "payments.settled", type: "payment.settled", source: "/test"))
            Issue.record("a publish outside the permissions succeeded")
        } catch let error as EventBusError {
            #expect(error.code == .permissionDenied, "\(error)")
            #expect(error.message.contains("events.payments.settled"), "\(error)")
            #expect(!error.isRetriable)
        }
        #expect(ContinuousClock.now - started < .seconds(5))
        _ = try await bus.publish(Event(subject: "orders.updated", type: "order.updated", source: "/test"))
        await bus.close()
    }
}
