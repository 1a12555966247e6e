/// Byte-pair merging of one pre-tokenized piece: start from one token per byte, then repeatedly
/// merge the adjacent pair with the lowest rank (the leftmost among equal ranks) until no adjacent
/// pair has a merge. This is the rule of both Hugging Face's BPE model and tiktoken.
///
/// Short pieces (nearly all of them) use a flat array and a linear scan for the best pair; long
/// pieces (runs of spaces, digits or punctuation) use a linked list and a binary heap so a piece of
/// n bytes costs O(n log n) rather than O(n²).
struct BytePairMerger {
    /// A symbol and the merge of it with the symbol after it (`rank == noMerge` when there is none).
    private struct Symbol {
        var id: Int32
        var rank: UInt32
        var merged: Int32
    }

    private var symbols: [Symbol] = []
    private static let noMerge = UInt32.max
    /// Pieces longer than this take the heap path.
    static let linearLimit = 96

    /// Appends the tokens of `piece` to `output`. `byteIds[b]` is the token of the single byte `b`.
    mutating func merge(_ piece: UnsafeBufferPointer<UInt8>, byteIds: [Int32], merges: MergeTable,
                        into output: inout [Int32]) {
        if piece.count > Self.linearLimit {
            HeapMerger.merge(piece, byteIds: byteIds, merges: merges, into: &output)
            return
        }
        symbols.removeAll(keepingCapacity: true)
        for byte in piece { symbols.append(Symbol(id: byteIds[Int(byte)], rank: Self.noMerge, merged: -1)) }
        @inline(__always) func link(_ k: Int) {
            if let found = merges.merge(symbols[k].id, symbols[k + 1].id) {
                symbols[k].rank = found.rank
                symbols[k].merged = found.merged
            } else {
                symbols[k].rank = Self.noMerge
            }
        }
        for k in 0..<(symbols.count - 1) { link(k) }
        while true {
            var best = Self.noMerge, at = -1
            for k in 0..<(symbols.count - 1) where symbols[k].rank < best {
                best = symbols[k].rank
                at = k
            }
            if at < 0 { break }
            symbols[at].id = symbols[at].merged
            symbols.remove(at: at + 1)
            if at > 0 { link(at - 1) }
            if at + 1 < symbols.count { link(at) } else { symbols[at].rank = Self.noMerge }
        }
        for symbol in symbols { output.append(symbol.id) }
    }
}

/// The O(n log n) merge for long pieces: symbols in a doubly linked list over byte positions, and
/// candidate merges in a min-heap ordered by (rank, position), checked for staleness when popped.
private enum HeapMerger {
    struct Candidate: Comparable {
        var rank: UInt32
        var position: Int32
        var left: Int32
        var right: Int32
        static func < (a: Candidate, b: Candidate) -> Bool {
            a.rank != b.rank ? a.rank < b.rank : a.position < b.position
        }
    }

    static func merge(_ piece: UnsafeBufferPointer<UInt8>, byteIds: [Int32], merges: MergeTable,
                      into output: inout [Int32]) {
        let n = piece.count
        var ids = piece.map { byteIds[Int($0)] }
        var next = (0..<n).map { Int32($0 + 1) }  // n means none
        var previous = (0..<n).map { Int32($0 - 1) }  // -1 means none
        var alive = [Bool](repeating: true, count: n)
        var heap: [Candidate] = []
        heap.reserveCapacity(n)

        func consider(_ position: Int) {
            let after = Int(next[position])
            guard after < n, let found = merges.merge(ids[position], ids[after]) else { return }
            push(&heap, Candidate(rank: found.rank, position: Int32(position), left: ids[position], right: ids[after]))
        }
        for position in 0..<(n - 1) { consider(position) }

        while let top = pop(&heap) {
            let position = Int(top.position)
            let after = Int(next[position])
            // Stale: the left symbol was absorbed, or either side has changed since the push.
            guard alive[position], after < n, ids[position] == top.left, ids[after] == top.right else { continue }
            ids[position] = merges.merge(top.left, top.right)!.merged
            alive[after] = false
            let afterAfter = Int(next[after])
            next[position] = Int32(afterAfter)
            if afterAfter < n { previous[afterAfter] = Int32(position) }
            if previous[position] >= 0 { consider(Int(previous[position])) }
            consider(position)
        }
        var position = 0
        while position < n {
            output.append(ids[position])
            position = Int(next[position])
        }
    }

    private static func push(_ heap: inout [Candidate], _ candidate: Candidate) {
        heap.append(candidate)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child] < heap[parent] else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private static func pop(_ heap: inout [Candidate]) -> Candidate? {
        guard let top = heap.first else { return nil }
        let last = heap.removeLast()
        if heap.isEmpty { return top }
        heap[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < heap.count, heap[left] < heap[smallest] { smallest = left }
            if right < heap.count, heap[right] < heap[smallest] { smallest = right }
            if smallest == parent { break }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
        return top
    }
}
