/// Hands what a benchmark's `setup` built to its body and `teardown` (package-benchmark gives the
/// teardown hook no argument). Each benchmark runs in its own process, one phase after another,
/// so the box needs no lock.
public final class SetupBox<Value>: @unchecked Sendable {
    public var value: Value?

    public init() {}

    /// The value `setup` stored; a benchmark body runs only after a successful setup.
    public var unwrapped: Value {
        guard let value else { fatalError("benchmark body ran without its setup") }
        return value
    }
}

/// Numbers the iterations of one benchmark process (for names that must differ per iteration,
/// such as a new durable consumer each time).
public final class IterationCounter: @unchecked Sendable {
    // @unchecked: iterations of one benchmark run one after another.
    private var current = 0

    /// A counter before the first iteration.
    public init() {}

    /// 1 for the first call, then 2, 3, ...
    public func next() -> Int {
        current += 1
        return current
    }
}

/// Keeps objects alive until the benchmark process ends (for example what a raw callback may
/// still touch after its iteration unsubscribed).
public final class KeepAlive<Value>: @unchecked Sendable {
    // @unchecked: iterations of one benchmark run one after another.
    private var values: [Value] = []

    /// Keeps nothing yet.
    public init() {}

    /// Keeps `value` alive until the process ends.
    public func keep(_ value: Value) { values.append(value) }
}
