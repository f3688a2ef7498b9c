import Synchronization

/// A list that tasks of a check append to concurrently and the check reads.
final class Recorder<Element: Sendable>: Sendable {
    private let items = Mutex<[Element]>([])

    func append(_ item: Element) {
        items.withLock { $0.append(item) }
    }

    var all: [Element] {
        items.withLock { $0 }
    }

    var count: Int {
        items.withLock { $0.count }
    }
}
