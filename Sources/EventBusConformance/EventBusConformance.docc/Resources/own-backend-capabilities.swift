import EventBus

public final class MyBus: EventBus {
    /// Declare only what the backend really does: checks that need a capability
    /// missing here are skipped, every other check runs and can fail.
    public var capabilities: EventBusCapabilities {
        [.persistent, .consumerGroups, .exactlyOncePublish, .requestReply, .deadLetter]
    }

    // publish(_:), subscribe(_:options:), request(_:timeout:) and close() follow.
}
