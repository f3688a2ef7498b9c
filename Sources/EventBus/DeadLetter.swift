/// Names shared by every backend for dead-lettered events.
///
/// A dead-lettered event is the original event (same id, type, source and payload) published on the
/// dead-letter subject, with these extension attributes (on NATS, headers) saying where it came from.
public enum DeadLetter {
    /// The subject the event was originally published on.
    public static let subjectHeader = "deadletter-subject"
    /// How many times it was delivered before it was given up.
    public static let attemptsHeader = "deadletter-attempts"
    /// The last error, as text.
    public static let errorHeader = "deadletter-error"
    /// The event's sequence in the log it came from.
    public static let streamSequenceHeader = "deadletter-stream-sequence"
    /// The consumer group that gave it up (absent for a subscriber without a group).
    public static let groupHeader = "deadletter-group"
    /// The prefix of the default dead-letter subject.
    public static let defaultSubjectPrefix = "deadletter."

    /// `deadletter.<original subject>`.
    public static func defaultSubject(for originalSubject: String) -> String {
        defaultSubjectPrefix + originalSubject
    }

    /// The dead-letter copy of `event`: the same event on `subject` with the dead-letter extensions set.
    public static func event(
        from event: Event,
        deadLetterSubject subject: String,
        attempts: Int,
        error: String,
        sequence: UInt64,
        group: String?
    ) -> Event {
        var copy = event
        copy.subject = subject
        var extensions = event.extensions
        extensions[subjectHeader] = event.subject
        extensions[attemptsHeader] = String(attempts)
        extensions[errorHeader] = headerSafe(error)
        extensions[streamSequenceHeader] = String(sequence)
        if let group {
            extensions[groupHeader] = group
        } else {
            extensions[groupHeader] = nil
        }
        copy.extensions = extensions
        return copy
    }

    /// Error text becomes a header value, so CR, LF and NUL become spaces and it is cut to 1,024 bytes.
    static func headerSafe(_ text: String) -> String {
        var cleaned = String(
            String.UnicodeScalarView(
                text.unicodeScalars.map { $0 == "\r" || $0 == "\n" || $0 == "\0" ? " " : $0 }
            )
        )
        if cleaned.utf8.count > 1024 {
            cleaned = String(decoding: cleaned.utf8.prefix(1024), as: UTF8.self)
        }
        return cleaned
    }
}
