extension Event {
    /// Extension names that have a field of their own or are CloudEvents context attributes, so they may not
    /// be set through ``extensions``.
    public static let reservedExtensionNames: Set<String> = [
        "id", "source", "type", "subject", "time", "specversion", "datacontenttype", "dataschema", "data",
        "traceparent", "tracestate", "correlationid", "causationid",
    ]

    /// Checks that the event can travel on any backend, as every `publish` does before it touches the backend.
    ///
    /// The rules: `id`, `source` and `type` are not empty; `subject` is a literal NATS subject; no attribute or
    /// extension value contains CR, LF or NUL (each becomes a header); extension names are 1 to 64 lower-case
    /// letters, digits or `-` and are not reserved (``reservedExtensionNames``).
    public func validateForPublish() throws(EventBusError) {
        for (name, value) in [("id", id), ("source", source), ("type", type)] where value.isEmpty {
            throw EventBusError(.invalidEvent, "event attribute '\(name)' is empty; CloudEvents requires it")
        }
        try SubjectRules.validateLiteral(subject, role: "event subject")
        let attributes: [(String, String?)] = [
            ("id", id), ("source", source), ("type", type), ("datacontenttype", dataContentType),
            ("correlationid", correlationID), ("causationid", causationID), ("traceparent", traceParent),
            ("tracestate", traceState),
        ]
        for case let (name, value?) in attributes {
            try Self.validateHeaderValue(value, name: name)
        }
        for (name, value) in extensions {
            try Self.validateExtensionName(name)
            try Self.validateHeaderValue(value, name: name)
        }
    }

    static func validateExtensionName(_ name: String) throws(EventBusError) {
        guard !name.isEmpty, name.utf8.count <= 64 else {
            throw EventBusError(.invalidEvent, "extension name '\(name)' must have 1 to 64 characters")
        }
        for byte in name.utf8 {
            let allowed = (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39) || byte == UInt8(ascii: "-")
            if !allowed {
                throw EventBusError(
                    .invalidEvent,
                    "extension name '\(name.debugEscaped)' may only contain lower-case letters, digits and '-'"
                )
            }
        }
        if reservedExtensionNames.contains(name) {
            throw EventBusError(
                .invalidEvent,
                "extension name '\(name)' is reserved; set the event's own field instead"
            )
        }
    }

    static func validateHeaderValue(_ value: String, name: String) throws(EventBusError) {
        for byte in value.utf8 where byte == 0x0D || byte == 0x0A || byte == 0x00 {
            throw EventBusError(
                .invalidEvent,
                "attribute '\(name)' value '\(value.debugEscaped)' contains CR, LF or NUL, which cannot travel in a header"
            )
        }
    }
}
