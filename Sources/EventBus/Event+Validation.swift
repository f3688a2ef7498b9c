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
    ///
    /// Any other text may travel: spaces, `%`, `"` and non-ASCII are percent-encoded in the NATS binding's
    /// `ce-*` headers. CR, LF and NUL stay refused although encoding would carry them in `ce-*` headers: the
    /// CloudEvents type system forbids control characters in String attributes (other SDKs reject them), and
    /// some values travel verbatim (the id as `Nats-Msg-Id`, `datacontenttype`, trace context), where they
    /// would break the header block.
    ///
    /// An event that passed is remembered as valid until one of its attributes is set, so publishing the same
    /// value again (a retry, a fan-out to several buses) does not check it again.
    public func validateForPublish() throws(EventBusError) {
        if isKnownValidForPublish { return }
        if !passesPublishChecks {
            try validateInDetail()
        }
        markValidForPublish()
    }

    /// Names the first rule the event breaks; runs only when the quick check said something is wrong (or
    /// the event has extensions), so it may take its time.
    private func validateInDetail() throws(EventBusError) {
        try Self.validateRequired(id, name: "id")
        try Self.validateRequired(source, name: "source")
        try Self.validateRequired(type, name: "type")
        try SubjectRules.validateLiteral(subject, role: "event subject")
        try Self.validateHeaderValue(dataContentType, name: "datacontenttype")
        try Self.validateHeaderValue(correlationID, name: "correlationid")
        try Self.validateHeaderValue(causationID, name: "causationid")
        try Self.validateHeaderValue(traceParent, name: "traceparent")
        try Self.validateHeaderValue(traceState, name: "tracestate")
        for (name, value) in extensions {
            try Self.validateExtensionName(name)
            try Self.validateHeaderValue(value, name: name)
        }
    }

    private static func validateRequired(_ value: String, name: String) throws(EventBusError) {
        if value.isEmpty {
            throw EventBusError(.invalidEvent, "event attribute '\(name)' is empty; CloudEvents requires it")
        }
        try validateHeaderValue(value, name: name)
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

    static func validateHeaderValue(_ value: String?, name: String) throws(EventBusError) {
        guard let value else { return }
        if value.withContiguousUTF8IfAvailable(ByteScan.isHeaderSafe) == true { return }
        for byte in value.utf8 where byte == 0x0D || byte == 0x0A || byte == 0x00 {
            throw EventBusError(
                .invalidEvent,
                "attribute '\(name)' value '\(value.debugEscaped)' contains CR, LF or NUL, which cannot travel in a header"
            )
        }
    }
}
