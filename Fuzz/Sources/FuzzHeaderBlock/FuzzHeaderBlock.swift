import FuzzSupport
@testable import NATS

/// The received header block (`NATS/1.0[ status]\r\n`, `name: value\r\n` lines, `\r\n`).
///
/// Invariants: the lazy reader of simple blocks and the full parser read the same fields (and
/// agree on equality, hash, count, size and lookups); a block that parses and whose fields are
/// valid to send re-encodes to `encodedSize` bytes that parse to the same fields, and that
/// encoding is simple when it has fields.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHeaderBlock(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let raw = UnsafeRawBufferPointer(inputBytes(data, size))
    let parsed = NATSHeaders(wireBlock: raw)
    let simple = SimpleBlock.isSimple(raw)
    if simple {
        let parsed = parsed ?? NATSHeaders()
        invariant(!parsed.isEmpty, "a simple block the full parser does not read")
        let lazy = NATSHeaders(simpleBlock: NATSPayload(copying: raw))
        let lazyFields = lazy.fields
        invariant(lazyFields == parsed.parsed, "lazy \(lazyFields) != parsed \(parsed.parsed)")
        invariant(lazy == parsed && parsed == lazy, "== differs between forms")
        invariant(lazy.hashValue == parsed.hashValue, "hash differs between forms")
        invariant(lazy.count == parsed.count, "count \(lazy.count) != \(parsed.count)")
        // The lazy form keeps the received bytes, the list holds strings (invalid UTF-8
        // repaired): their sizes agree when the block is UTF-8.
        if String(validating: UnsafeRawBufferPointer(raw).bindMemory(to: UInt8.self), as: UTF8.self) != nil {
            invariant(lazy.encodedSize == parsed.encodedSize, "encodedSize differs between forms")
        }
        // The lazy form is sent as it is: its size is what it writes, and that reads back.
        let block = [UInt8](unsafeUninitializedCapacity: lazy.encodedSize) { buffer, count in
            count = lazy.encode(into: UnsafeMutableRawBufferPointer(buffer))
        }
        invariant(block.count == lazy.encodedSize, "lazy encode wrote \(block.count), encodedSize \(lazy.encodedSize)")
        invariant(block.withUnsafeBytes { NATSHeaders(wireBlock: $0) } == parsed, "lazy form re-encoded reads differently")
        invariant(lazy.names == parsed.names, "names differ between forms")
        for name in parsed.names {
            invariant(lazy[name] == parsed[name], "lookup of \(name) differs")
            invariant(lazy.values(for: name) == parsed.values(for: name), "values of \(name) differ")
        }
        var visited: [NATSHeaders.Field] = []
        lazy.forEachFieldBytes { name, value in
            visited.append(.init(name: String(decoding: name, as: UTF8.self), value: String(decoding: value, as: UTF8.self)))
            return true
        }
        invariant(visited == lazyFields, "forEachFieldBytes differs from fields")
        // A change turns the lazy form into a list without losing a field.
        var changed = lazy
        changed.add("1", for: "X-Fuzz")
        invariant(Array(changed.parsed.dropLast()) == lazyFields, "materialising lost fields")
    }
    guard let headers = parsed else { return 0 }
    // Only what the client would send may be re-encoded: a received value may hold a stray CR.
    guard (try? NATSValidation.validateHeaders(headers)) != nil else { return 0 }
    let size = headers.encodedSize
    let encoded = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
        count = headers.encode(into: UnsafeMutableRawBufferPointer(buffer))
    }
    invariant(encoded.count == size, "encode wrote \(encoded.count) bytes, encodedSize says \(size)")
    if headers.isEmpty { return 0 }
    encoded.withUnsafeBytes { block in
        let again = NATSHeaders(wireBlock: block)
        invariant(again == headers, "re-encoded \(headers.parsed) parses as \(again?.parsed ?? [])")
        invariant(SimpleBlock.isSimple(block), "an encoded block is not simple: \(Array(block))")
    }
    return 0
}

@main
enum Main {
    static func main() { runLibFuzzer(fuzzHeaderBlock) }
}
