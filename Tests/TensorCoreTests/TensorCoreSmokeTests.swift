import Testing
@testable import TensorCore

@Test func TensorCoreModuleBuilds() { #expect(Bool(true)) }
