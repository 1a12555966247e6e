import Testing
import TensorCore
@testable import Models

/// The sampler as it was before top-p stopped sorting every token (a full stable sort of the ids
/// by probability), kept here so the new one can be compared with it.
private func chooseTokenByFullSort(_ logits: [Float], _ options: SamplingOptions, _ generator: inout RandomGenerator) -> Int {
    var scaled = logits.map { Double($0) / options.temperature }
    if options.topK > 0 && options.topK < scaled.count {
        let threshold = scaled.sorted(by: >)[options.topK - 1]
        for i in scaled.indices where scaled[i] < threshold { scaled[i] = -.infinity }
    }
    let maximum = scaled.max()!
    var probabilities = scaled.map { Double.exp($0 - maximum) }
    let total = probabilities.reduce(0, +)
    probabilities = probabilities.map { $0 / total }
    if options.topP < 1 {
        let order = probabilities.indices.sorted { probabilities[$0] > probabilities[$1] }
        var cumulative = 0.0
        var keep = [Bool](repeating: false, count: probabilities.count)
        for index in order {
            keep[index] = true
            cumulative += probabilities[index]
            if cumulative >= options.topP { break }
        }
        for i in probabilities.indices where !keep[i] { probabilities[i] = 0 }
        let kept = probabilities.reduce(0, +)
        probabilities = probabilities.map { $0 / kept }
    }
    var draw = generator.nextUniform()
    for (index, p) in probabilities.enumerated() {
        draw -= p
        if draw < 0 { return index }
    }
    return probabilities.lastIndex { $0 > 0 } ?? 0
}

@Suite("Top-p sampling without a full sort")
struct NucleusSamplingTests {
    /// Logits of one of several shapes: flat (a random model's), peaked (a trained model's), heavy
    /// ties (logits on a coarse grid, so the nucleus boundary often falls inside a run of equal
    /// probabilities), a single spike, and rows with tokens masked to −∞.
    static func logits(kind: Int, vocabulary: Int, generator: inout RandomGenerator) -> [Float] {
        switch kind {
        case 0: return (0..<vocabulary).map { _ in Float(generator.nextNormal() * 0.45) }
        case 1: return (0..<vocabulary).map { _ in Float(generator.nextNormal() * 4) }
        case 2: return (0..<vocabulary).map { _ in Float(Int(generator.nextUniform() * 4)) }
        case 3:
            var values = [Float](repeating: 0, count: vocabulary)
            values[Int(generator.nextUniform() * Double(vocabulary))] = 30
            return values
        default:
            return (0..<vocabulary).map { _ in generator.nextUniform() < 0.3 ? -.infinity : Float(generator.nextNormal()) }
        }
    }

    @Test("chooses the same token as the full sort, and draws the same random numbers, on 6000 random distributions")
    func sameTokensAsFullSort() {
        var generator = RandomGenerator(seed: 2026)
        var differing: [String] = []
        var tiedCases = 0
        for case_ in 0..<6000 {
            let vocabulary = [1, 2, 7, 100, 1000, 8192][case_ % 6]
            let kind = (case_ / 6) % 5
            let values = Self.logits(kind: kind, vocabulary: vocabulary, generator: &generator)
            let options = SamplingOptions(temperature: [1, 0.7, 1.3][case_ % 3],
                                          topK: case_ % 7 == 0 ? 50 : 0,
                                          topP: [0.95, 0.9, 0.5, 0.1, 0.999, 0.0, 0.3][(case_ / 2) % 7],
                                          seed: UInt64(case_))
            var old = RandomGenerator(seed: UInt64(case_) &* 7919)
            var new = old
            let expected = chooseTokenByFullSort(values, options, &old)
            let chosen = chooseToken(values, options, &new)
            if kind == 2 { tiedCases += 1 }
            if chosen != expected || old.next() != new.next() {
                differing.append("case \(case_) kind \(kind) V=\(vocabulary) \(options): \(chosen) vs \(expected)")
            }
        }
        #expect(differing.isEmpty, "\(differing.prefix(5))")
        #expect(tiedCases == 1200, "every fifth distribution has ties")
    }

    @Test("keeps exactly the tokens a stable full sort keeps, ties at the boundary going to the lowest ids")
    func keptSetMatchesFullSort() {
        var generator = RandomGenerator(seed: 5)
        for case_ in 0..<3000 {
            let vocabulary = [3, 50, 4096][case_ % 3]
            let topP = [0.95, 0.5, 0.2, 0.8][case_ % 4]
            // Probabilities on a grid of a few values: many ties.
            let raw = (0..<vocabulary).map { _ in Double(1 + Int(generator.nextUniform() * Double(case_ % 2 == 0 ? 3 : 50))) }
            let total = raw.reduce(0, +)
            var probabilities = raw.map { $0 / total }
            let order = probabilities.indices.sorted { probabilities[$0] > probabilities[$1] }
            var cumulative = 0.0
            var expected = Set<Int>()
            for index in order {
                expected.insert(index)
                cumulative += probabilities[index]
                if cumulative >= topP { break }
            }
            keepNucleus(&probabilities, topP: topP)
            let kept = Set(probabilities.indices.filter { probabilities[$0] > 0 })
            #expect(kept == expected, "case \(case_): V=\(vocabulary) top-p \(topP): kept \(kept.count), expected \(expected.count)")
        }
    }

    @Test("the selection finds the sorted walk's boundary without sorting on almost every distribution")
    func selectionFindsTheBoundary() {
        var generator = RandomGenerator(seed: 77)
        var found = 0
        for case_ in 0..<400 {
            let logits = Self.logits(kind: case_ % 2, vocabulary: 8192, generator: &generator).map(Double.init)
            let maximum = logits.max()!
            let weights = logits.map { Double.exp($0 - maximum) }
            let total = weights.reduce(0, +)
            var probabilities = weights.map { $0 / total }
            let topP = [0.95, 0.9, 0.5][case_ % 3]
            let sorted = probabilities.sorted(by: >)
            var cumulative = 0.0
            var last = sorted.count - 1
            for (position, value) in sorted.enumerated() {
                cumulative += value
                if cumulative >= topP { last = position; break }
            }
            guard let boundary = nucleusBoundary(&probabilities, topP: topP) else { continue }
            found += 1
            #expect(boundary.threshold == sorted[last], "case \(case_)")
            #expect(boundary.tiesKept == sorted[...last].filter { $0 == sorted[last] }.count, "case \(case_)")
        }
        #expect(found >= 390, "the selection answered \(found) of 400")
    }
}
