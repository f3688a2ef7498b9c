import EventBus
import Testing

extension EventBusConformance {
    /// How much work each check does: `.short` (hundreds of events) for backends behind a real server,
    /// `.long` (thousands) for in-process backends.
    public enum Size: String, Sendable, CaseIterable {
        /// Modest counts, for slow backends.
        case short
        /// Larger counts and more repetitions.
        case long
    }

    /// One behaviour of the EventBus contract, checked on its own.
    ///
    /// Conforms to `CustomTestStringConvertible`, so a parameterized test over ``EventBusConformance/checks``
    /// shows each check's name.
    public struct Check: Sendable, Hashable, CustomStringConvertible, CustomTestStringConvertible {
        /// A stable, unique name such as `wildcardPatterns`.
        public let name: String
        /// What the check verifies, in a sentence.
        public let summary: String
        /// Capabilities the backend must declare for the check to run; otherwise it is skipped.
        public let requires: EventBusCapabilities
        let body: @Sendable (CheckContext) async throws -> Void

        init(
            _ name: String,
            requires: EventBusCapabilities = [],
            _ summary: String,
            body: @escaping @Sendable (CheckContext) async throws -> Void
        ) {
            self.name = name
            self.summary = summary
            self.requires = requires
            self.body = body
        }

        /// Checks are equal when their names are.
        public static func == (lhs: Check, rhs: Check) -> Bool {
            lhs.name == rhs.name
        }

        /// Hashes the name.
        public func hash(into hasher: inout Hasher) {
            hasher.combine(name)
        }

        /// The check's name.
        public var description: String { name }

        /// The check's name, as test output shows it.
        public var testDescription: String { name }
    }
}
