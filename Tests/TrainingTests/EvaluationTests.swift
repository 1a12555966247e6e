import Testing
@testable import Training

@Suite("Evaluation: how answers are compared")
struct EvaluationTests {
    @Test("answers are compared lower-cased, with white space folded, final punctuation and a leading article dropped",
          arguments: [("The red circle.", "red circle", true), ("  Top   left ", "top left", true), ("Yes!", "yes", true),
                      ("a", "a", true), ("3", "three", false), ("red", "blue", false), ("top left", "top", false)])
    func normalization(given: String, reference: String, matches: Bool) {
        #expect((normalizedAnswer(given) == normalizedAnswer(reference)) == matches)
    }
}
