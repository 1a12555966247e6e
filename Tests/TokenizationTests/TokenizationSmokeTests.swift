import Testing
@testable import Tokenization

@Test func TokenizationModuleBuilds() { #expect(Bool(true)) }
