// Open-addressing hash tables for the two lookups on the encoder's hot path: byte string -> token
// id, and adjacent-token pair -> merge. Both are built once and then only read, so they need no
// deletion; lookups never allocate (Swift's Dictionary would need an array or String key per piece).

/// The bytes of every token, stored back to back, with `id -> bytes` and `bytes -> id` lookups.
struct TokenByteTable: Sendable {
    private(set) var arena: [UInt8] = []
    /// `starts[id] ..< starts[id + 1]` are token `id`'s bytes; ids with no token have an empty range.
    private(set) var starts: [Int32] = [0]
    /// Slot -> token id + 1 (0 marks an empty slot).
    private var slots: [Int32] = []
    private var mask = 0

    /// Builds the table from `tokens[id]`, nil for ids that have no byte string (gaps).
    init(tokens: [[UInt8]?]) {
        for token in tokens {
            if let token { arena.append(contentsOf: token) }
            starts.append(Int32(arena.count))
        }
        var capacity = 16
        while capacity < tokens.count * 2 { capacity <<= 1 }
        slots = [Int32](repeating: 0, count: capacity)
        mask = capacity - 1
        arena.withUnsafeBufferPointer { bytes in
            for id in tokens.indices where tokens[id] != nil {
                let start = Int(starts[id]), count = Int(starts[id + 1]) - start
                var slot = Self.hash(UnsafeBufferPointer(rebasing: bytes[start..<start + count])) & mask
                // The first id wins when two ids share a byte string, as a rank file's first line would.
                var duplicate = false
                while slots[slot] != 0 {
                    if tokenEquals(Int(slots[slot]) - 1, UnsafeBufferPointer(rebasing: bytes[start..<start + count]),
                                   arena: bytes) {
                        duplicate = true
                        break
                    }
                    slot = (slot + 1) & mask
                }
                if !duplicate { slots[slot] = Int32(id + 1) }
            }
        }
    }

    var count: Int { starts.count - 1 }

    /// Token `id`'s bytes.
    func bytes(of id: Int) -> ArraySlice<UInt8> {
        arena[Int(starts[id])..<Int(starts[id + 1])]
    }

    func byteCount(of id: Int) -> Int { Int(starts[id + 1] - starts[id]) }

    /// The id whose bytes are exactly `key`, if any.
    @inline(__always)
    func id(of key: UnsafeBufferPointer<UInt8>) -> Int32? {
        arena.withUnsafeBufferPointer { bytes in
            var slot = Self.hash(key) & mask
            while true {
                let entry = slots[slot]
                if entry == 0 { return nil }
                if tokenEquals(Int(entry) - 1, key, arena: bytes) { return entry - 1 }
                slot = (slot + 1) & mask
            }
        }
    }

    @inline(__always)
    private func tokenEquals(_ id: Int, _ key: UnsafeBufferPointer<UInt8>, arena: UnsafeBufferPointer<UInt8>) -> Bool {
        let start = Int(starts[id]), count = Int(starts[id + 1]) - start
        guard count == key.count else { return false }
        for i in 0..<count where arena[start + i] != key[i] { return false }
        return true
    }

    /// FNV-1a, finished with a multiply so short keys spread over the high bits too.
    @inline(__always)
    static func hash(_ key: UnsafeBufferPointer<UInt8>) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        h ^= h >> 29
        h = h &* 0xbf58_476d_1ce4_e5b9
        return Int(truncatingIfNeeded: h ^ (h >> 32))
    }
}

/// Adjacent token pair -> (merge rank, merged token id).
struct MergeTable: Sendable {
    private var keys: [UInt64]
    private var values: [UInt64]
    private let mask: Int
    private static let empty = UInt64.max

    /// Makes room for `expectedCount` merges.
    init(expectedCount: Int) {
        var capacity = 16
        while capacity < expectedCount * 2 { capacity <<= 1 }
        keys = [UInt64](repeating: Self.empty, count: capacity)
        values = [UInt64](repeating: 0, count: capacity)
        mask = capacity - 1
    }

    @inline(__always)
    private static func key(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    @inline(__always)
    private static func slot(_ key: UInt64, _ mask: Int) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9e37_79b9_7f4a_7c15) >> 29) & mask
    }

    /// Records a merge; returns false (and keeps the first) when the pair is already present.
    @discardableResult
    mutating func insert(left: Int32, right: Int32, rank: UInt32, merged: Int32) -> Bool {
        let key = Self.key(left, right)
        var slot = Self.slot(key, mask)
        while keys[slot] != Self.empty {
            if keys[slot] == key { return false }
            slot = (slot + 1) & mask
        }
        keys[slot] = key
        values[slot] = UInt64(rank) << 32 | UInt64(UInt32(bitPattern: merged))
        return true
    }

    /// The merge of `left` then `right`: its rank (lower merges first) and the merged id.
    @inline(__always)
    func merge(_ left: Int32, _ right: Int32) -> (rank: UInt32, merged: Int32)? {
        let key = Self.key(left, right)
        return keys.withUnsafeBufferPointer { keys in
            var slot = Self.slot(key, mask)
            while true {
                let found = keys[slot]
                if found == key {
                    let value = values[slot]
                    return (UInt32(truncatingIfNeeded: value >> 32), Int32(bitPattern: UInt32(truncatingIfNeeded: value)))
                }
                if found == Self.empty { return nil }
                slot = (slot + 1) & mask
            }
        }
    }
}
