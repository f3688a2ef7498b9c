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
