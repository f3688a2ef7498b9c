// ThreadSanitizer and Synchronization.Mutex on Linux: two threads increment a pair under one
// Mutex; the total is exact, and TSan (Swift 6.3.1) still reports a "Swift access race" on it.
//
//   swiftc -O -sanitize=thread Tests/Sanitizers/mutex-probe.swift -o /tmp/mutex-probe && /tmp/mutex-probe
import Foundation
import Synchronization

final class Box: Sendable {
    let counts = Mutex<(Int, Int)>((0, 0))
}

let box = Box()
let threads = (0..<2).map { _ in
    Thread {
        for _ in 0..<100_000 { box.counts.withLock { $0.0 += 1; $0.1 += 1 } }
    }
}
threads.forEach { $0.start() }
Thread.sleep(forTimeInterval: 2)
print(box.counts.withLock { $0 })  // (200000, 200000)
