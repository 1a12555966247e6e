/// The world's own seeded generator: SplitMix64 (Steele, Lea and Flood, 2014), so that the World
/// target needs nothing but Media and a seed gives the same scenes on every platform and Swift
/// version (the standard library's generators and `shuffle` make no such promise).
///
/// Every product of the world (a scene, its captions, its questions…) draws from its own stream,
/// ``derived(_:_:)``, so adding a product never changes the others.
public struct WorldRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// A generator whose sequence is fixed by `seed`.
    public init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A generator for one purpose and index, independent of every other (seed, purpose, index).
    public static func derived(seed: UInt64, purpose: UInt64, index: Int) -> WorldRandom {
        var mixer = WorldRandom(seed: seed ^ (purpose &* 0xD1B5_4A32_D192_ED03))
        let base = mixer.next()
        var stream = WorldRandom(seed: base ^ (UInt64(truncatingIfNeeded: index) &* 0x8CB9_2BA7_2F3D_8DD7))
        _ = stream.next()
        return stream
    }

    /// A uniform integer in `0..<bound` (`bound` > 0). Uses the multiply-shift reduction, whose bias
    /// is below 2⁻⁵⁰ for the small bounds the world uses.
    public mutating func int(below bound: Int) -> Int {
        precondition(bound > 0, "WorldRandom.int(below:) needs a positive bound")
        return Int(next().multipliedFullWidth(by: UInt64(bound)).high)
    }

    /// A uniform double in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// True with probability `probability`.
    public mutating func chance(_ probability: Double) -> Bool { unit() < probability }

    /// A uniform element of a non-empty array.
    public mutating func pick<T>(_ items: [T]) -> T { items[int(below: items.count)] }

    /// The elements in a uniform random order (Fisher–Yates).
    public mutating func shuffled<T>(_ items: [T]) -> [T] {
        var items = items
        if items.count < 2 { return items }
        for i in stride(from: items.count - 1, to: 0, by: -1) { items.swapAt(i, int(below: i + 1)) }
        return items
    }
}
