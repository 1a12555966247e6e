import Testing
import World

@Suite struct WorldPlaceholderTests {
    @Test func theTargetBuilds() { #expect(Bool(true)) }
}
