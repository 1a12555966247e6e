import Testing
@testable import Checkpoint

@Test func CheckpointModuleBuilds() { #expect(Bool(true)) }
