import Testing
@testable import Layers

@Test func LayersModuleBuilds() { #expect(Bool(true)) }
