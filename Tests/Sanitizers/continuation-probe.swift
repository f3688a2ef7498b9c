// ThreadSanitizer and continuations on Linux: a task awaits a continuation that a Dispatch queue
// resumes, 2,000 times; the sum is exact, and TSan (Swift 6.3.1) still reports data races
// between the resume and the awaiting task's frame.
//
//   swiftc -O -parse-as-library -sanitize=thread Tests/Sanitizers/continuation-probe.swift \
//       -o /tmp/continuation-probe && /tmp/continuation-probe
import Dispatch

let queue = DispatchQueue(label: "resumer", attributes: .concurrent)

@main
struct Probe {
    static func main() async {
        var total = 0
        for value in 0..<2000 {
            total += await withUnsafeContinuation { continuation in
                queue.async { continuation.resume(returning: value) }
            }
        }
        print(total)  // 1999000
    }
}
