import Benchmark

// JetStream workloads against a nats-server with JetStream (docs/DESIGN.md, "Workloads for
// benchmarks"): W4-W8, each as raw cnats, the NATS module and (where it applies) the EventBus on
// JetStream. Every benchmark process starts its own server and creates the stream `EVENTS` on
// `events.>` (the EventBus's default, file storage); the EventBus variants let the bus create it.
// ES1-ES3 (ES1ES3EventStore.swift): the event store, raw cnats beside `JetStreamEventStore`, on
// the store's stream `EVENTSTORE`.
let benchmarks: @Sendable () -> Void = {
    registerW4()
    registerW5()
    registerW6()
    registerW7()
    registerW8()
    registerEventStore()
}
