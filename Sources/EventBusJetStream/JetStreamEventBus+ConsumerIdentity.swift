public import EventBus
public import NATS

extension JetStreamEventBus {
    /// Which subscription of the bus a JetStream consumer serves: its pattern, and its group
    /// when it is a group's durable consumer. Lets tools show the names the bus gives consumers
    /// (`billing-94bd9984fae08da8`) next to the group and pattern an application wrote.
    public struct ConsumerIdentity: Sendable, Hashable {
        /// The subscription's pattern, as the application wrote it (without the subject prefix).
        public var pattern: String
        /// The group; `nil` for a subscriber without group (an ephemeral consumer).
        public var group: String?

        /// The identity of `consumer` when this bus (with `configuration`'s subject prefix)
        /// made it; `nil` for a consumer made by anything else.
        public init?(consumer: NATSConsumerInfo, configuration: Configuration) {
            let prefix = configuration.subjectPrefix + "."
            guard consumer.configuration.filterSubjects.count == 1, let filter = consumer.configuration.filterSubjects.first,
                filter.hasPrefix(prefix), let description = consumer.configuration.description
            else { return nil }
            let pattern = String(filter.dropFirst(prefix.count))
            // The description the bus writes when it creates the consumer (see JetStreamSubscription).
            let head = "EventBus subscription to '\(pattern)'"
            if description == head {
                self.pattern = pattern
                group = nil
                return
            }
            let groupHead = head + " in group '"
            guard description.hasPrefix(groupHead), description.hasSuffix("'"), description.count > groupHead.count else { return nil }
            let group = String(description.dropFirst(groupHead.count).dropLast())
            // The name proves it: another tool could have copied the description.
            guard let parsed = try? SubjectPattern(pattern), consumer.name == JetStreamEventBus.consumerName(group: group, pattern: parsed)
            else { return nil }
            self.pattern = pattern
            self.group = group
        }
    }

    /// The durable consumer name the bus gives `group` on `pattern`: the group with `.`, `*`, `>`,
    /// `/`, `\` and whitespace replaced by `_`, then a hash of the pattern, so that the same group
    /// on two patterns has two consumers. The same on every host and in every version that
    /// keeps this scheme.
    public static func consumerName(group: String, pattern: SubjectPattern) -> String {
        JetStreamSubscription.durableName(group: group, pattern: pattern)
    }
}
