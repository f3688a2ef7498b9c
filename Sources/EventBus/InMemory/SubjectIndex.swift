/// Which consumers want a subject: a token tree of patterns, as the NATS server's sublist, with a cache of
/// recent answers so a publish costs one dictionary lookup, not a walk and never a scan of all patterns.
///
/// Not thread-safe: it lives inside the broker's locked state.
struct SubjectIndex<Value: Hashable & Sendable>: Sendable {
    /// `@unchecked Sendable`: nodes are mutable, but reachable only through an index, and an index only
    /// through the broker's `Mutex`, so no two threads touch a node at once.
    private final class Node: @unchecked Sendable {
        var children: [Substring: Node] = [:]
        var starChild: Node?
        /// Values whose pattern ends at this node.
        var values: [Value] = []
        /// Values whose pattern is this node's path followed by `>`.
        var tailValues: [Value] = []

        var isEmpty: Bool {
            children.isEmpty && starChild == nil && values.isEmpty && tailValues.isEmpty
        }
    }

    private let root = Node()
    private var cache: [String: [Value]] = [:]
    private let cacheLimit: Int

    init(cacheLimit: Int = 4096) {
        self.cacheLimit = cacheLimit
    }

    /// Number of cached answers (for tests of the cache bound).
    var cachedSubjectCount: Int { cache.count }

    mutating func insert(_ pattern: SubjectPattern, _ value: Value) {
        var node = root
        let tokens = pattern.rawValue.split(separator: ".", omittingEmptySubsequences: false)
        for (index, token) in tokens.enumerated() {
            if token == ">" && index == tokens.count - 1 {
                node.tailValues.append(value)
                cache.removeAll(keepingCapacity: true)
                return
            }
            if token == "*" {
                if node.starChild == nil { node.starChild = Node() }
                node = node.starChild!
            } else {
                if node.children[token] == nil { node.children[token] = Node() }
                node = node.children[token]!
            }
        }
        node.values.append(value)
        cache.removeAll(keepingCapacity: true)
    }

    mutating func remove(_ pattern: SubjectPattern, _ value: Value) {
        let tokens = pattern.rawValue.split(separator: ".", omittingEmptySubsequences: false)
        Self.remove(value, tokens: tokens[...], from: root)
        cache.removeAll(keepingCapacity: true)
    }

    /// Removes `value` below `node` and prunes nodes left empty.
    private static func remove(_ value: Value, tokens: ArraySlice<Substring>, from node: Node) {
        guard let token = tokens.first else {
            node.values.removeAll { $0 == value }
            return
        }
        if token == ">" && tokens.count == 1 {
            node.tailValues.removeAll { $0 == value }
            return
        }
        if token == "*" {
            guard let child = node.starChild else { return }
            remove(value, tokens: tokens.dropFirst(), from: child)
            if child.isEmpty { node.starChild = nil }
        } else {
            guard let child = node.children[token] else { return }
            remove(value, tokens: tokens.dropFirst(), from: child)
            if child.isEmpty { node.children[token] = nil }
        }
    }

    /// The values whose pattern matches the literal `subject`.
    mutating func match(_ subject: String) -> [Value] {
        if root.isEmpty {
            // Nobody subscribes: no hashing, no cache entry.
            return []
        }
        if let cached = cache[subject] {
            return cached
        }
        var result: [Value] = []
        let tokens = subject.split(separator: ".", omittingEmptySubsequences: false)
        Self.collect(tokens[...], at: root, into: &result)
        if cache.count >= cacheLimit {
            // Evict one entry; the first in hash order is as good as a random one and costs nothing.
            cache.remove(at: cache.startIndex)
        }
        cache[subject] = result
        return result
    }

    private static func collect(_ tokens: ArraySlice<Substring>, at node: Node, into result: inout [Value]) {
        guard let token = tokens.first else {
            result.append(contentsOf: node.values)
            return
        }
        result.append(contentsOf: node.tailValues)
        let rest = tokens.dropFirst()
        if let child = node.children[token] {
            collect(rest, at: child, into: &result)
        }
        if let star = node.starChild {
            collect(rest, at: star, into: &result)
        }
    }
}
