import Billing
import EventBusBootstrap
import Logging

let logger = Logger(label: "billing")

// EVENT_BUS_* variables pick the backend; none set means the in-memory bus.
try await EventBusFactory.withEventBus(settings: .fromEnvironment(), logger: logger) { bus in
    let billing = BillingService(bus: bus)
    let orders = try await billing.subscribe()
    try await billing.run(orders)
}
