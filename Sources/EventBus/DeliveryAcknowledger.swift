/// What a backend supplies with each ``Delivery`` so that acknowledgements reach it.
///
/// Each method acts on exactly one delivery attempt. A second act on the same delivery, or an act on a
/// delivery that was meanwhile redelivered, throws ``EventBusError/Code/alreadyAcknowledged``; only
/// ``inProgress()`` may be repeated. Backends should make conforming types small structs (fitting an
/// existential's inline buffer of three words) so a delivery costs no allocation.
///
/// The methods run on the caller's executor (`nonisolated(nonsending)`), like ``Delivery``'s: settling
/// from an actor or from `consume`'s loop costs no hop. Declare the witnesses the same way; a plain
/// `async` witness still conforms, but hops to the global executor and back on every call.
public protocol DeliveryAcknowledger: Sendable {
    /// The event was handled; never deliver it again.
    nonisolated(nonsending) func ack() async throws
    /// The event was not handled; deliver it again after `delay` (`nil`: the subscription's backoff).
    nonisolated(nonsending) func nak(delay: Duration?) async throws
    /// The event can never be handled; stop delivering it and move it to the dead-letter subject.
    nonisolated(nonsending) func term(reason: String?) async throws
    /// The handler is still working: restart the ack wait.
    nonisolated(nonsending) func inProgress() async throws
    /// Sends `reply` to the requester; throws ``EventBusError/Code/notARequest`` if nobody asked.
    nonisolated(nonsending) func respond(_ reply: Event) async throws
}
