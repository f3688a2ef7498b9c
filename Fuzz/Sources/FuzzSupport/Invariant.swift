#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

import CLibFuzzer

/// The signature libFuzzer calls: one input's bytes (`nil` or any pointer when empty); returns 0.
public typealias FuzzTarget = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

/// Runs libFuzzer on `target` with the process's arguments (corpus directories, `-flags`) and
/// exits with its status.
public func runLibFuzzer(_ target: FuzzTarget) -> Never {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, target))
}

/// The input as a buffer (empty for an empty input, whatever pointer came with it).
@inline(__always)
public func inputBytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> UnsafeBufferPointer<UInt8> {
    guard let data, size > 0 else { return UnsafeBufferPointer(start: nil, count: 0) }
    return UnsafeBufferPointer(start: data, count: size)
}

/// Checks an invariant of the code under test. When it does not hold, prints `message` and
/// aborts: libFuzzer treats the signal as a crash and saves the input that caused it.
///
/// Not `precondition`: an optimised build traps without printing its message.
@inline(__always)
public func invariant(
    _ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
    file: StaticString = #fileID, line: UInt = #line
) {
    if !condition() {
        // Control characters escaped, so that a NUL does not cut the message short.
        var text = "invariant failed at \(file):\(line): \(message())".debugDescription + "\n"
        _ = text.withUTF8 { write(2, $0.baseAddress, $0.count) }
        abort()
    }
}

/// Whether `text` is one line a person can read: no control characters (C0 and DEL).
public func isOneReadableLine(_ text: String) -> Bool {
    !text.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
}

/// The input's bytes split at the first occurrence of `separator`: the part before it and the
/// part after it, or the whole input and `nil`.
public func split(_ bytes: UnsafeBufferPointer<UInt8>, at separator: UInt8) -> (ArraySlice<UInt8>, ArraySlice<UInt8>?) {
    let array = Array(bytes)
    guard let index = array.firstIndex(of: separator) else { return (array[...], nil) }
    return (array[..<index], array[(index + 1)...])
}
