import Benchmark

// Every live benchmark has the same frame: its setup starts a nats-server and builds what the
// iterations use, its teardown closes that and stops the server, and its body reports a failure as
// the benchmark's error. These register a benchmark with that frame, so that a workload file holds
// only what differs. The body is called once per iteration and starts and stops the measurement
// itself: the measured loop stays in the workload's own closure, as written there.

/// Registers a synchronous live benchmark (the raw cnats baselines: they block on cnats calls and
/// must not run as async code): `setup` gets a freshly started server and builds the fixture every
/// iteration's `body` gets; `teardown` closes the fixture, then the server stops.
///
/// A `RawFailure` thrown by the body is reported as the benchmark's error.
public func liveBenchmark<Fixture>(
    _ name: String,
    configuration: Benchmark.Configuration,
    body: @escaping (Benchmark, Fixture) throws(RawFailure) -> Void,
    setup: @escaping (BenchmarkServer) async throws -> Fixture,
    teardown: @escaping (Fixture) async -> Void = { _ in }
) {
    let box = SetupBox<(server: BenchmarkServer, fixture: Fixture)>()
    Benchmark(name, configuration: configuration) { benchmark in
        do throws(RawFailure) {
            try body(benchmark, box.unwrapped.fixture)
        } catch {
            benchmark.error(error.description)
        }
    } setup: {
        try await box.setUp(setup)
    } teardown: {
        await box.tearDown(teardown)
    }
}

/// Registers an asynchronous live benchmark (the NATS module and the EventBus): `setup` gets a
/// freshly started server and builds the fixture every iteration's `body` gets; `teardown` closes
/// the fixture, then the server stops.
///
/// An error thrown by the body is reported as the benchmark's error.
public func liveBenchmark<Fixture>(
    _ name: String,
    configuration: Benchmark.Configuration,
    body: @escaping (Benchmark, Fixture) async throws -> Void,
    setup: @escaping (BenchmarkServer) async throws -> Fixture,
    teardown: @escaping (Fixture) async -> Void = { _ in }
) {
    let box = SetupBox<(server: BenchmarkServer, fixture: Fixture)>()
    Benchmark(name, configuration: configuration) { benchmark in
        do {
            try await body(benchmark, box.unwrapped.fixture)
        } catch {
            benchmark.error("\(error)")
        }
    } setup: {
        try await box.setUp(setup)
    } teardown: {
        await box.tearDown(teardown)
    }
}

extension SetupBox {
    /// Starts a server and keeps it with what `build` made on it.
    fileprivate func setUp<Fixture>(
        _ build: (BenchmarkServer) async throws -> Fixture
    ) async throws where Value == (server: BenchmarkServer, fixture: Fixture) {
        let server = try BenchmarkServer.start()
        value = (server, try await build(server))
    }

    /// Closes the fixture with `close`, then stops the server (clients go before their server, so
    /// that none of them reconnects or reports a lost connection) and lets go of both.
    fileprivate func tearDown<Fixture>(
        _ close: (Fixture) async -> Void
    ) async where Value == (server: BenchmarkServer, fixture: Fixture) {
        if let value {
            await close(value.fixture)
            value.server.stop()
        }
        value = nil
    }
}
