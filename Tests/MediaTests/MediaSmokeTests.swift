import Testing
@testable import Media

@Test func MediaModuleBuilds() { #expect(Bool(true)) }
