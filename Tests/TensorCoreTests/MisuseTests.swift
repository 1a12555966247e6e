import Testing
import TensorCore

/// Bad use stops the process with a message naming the shapes; these run in child processes.
@Suite("Bad use fails loudly")
struct MisuseTests {
    @Test("a matmul with mismatched inner dimensions stops the process")
    func mismatchedMatmul() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Tensor(zeros: [2, 3]).matmul(Tensor(zeros: [4, 5]))
        }
        #expect(stderr(result).contains("inner dimensions differ: [2, 3] · [4, 5]"))
    }

    @Test("a broadcast that cannot apply stops the process")
    func badBroadcast() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Tensor(zeros: [2, 3]) + Tensor(zeros: [4])
        }
        #expect(stderr(result).contains("shapes [2, 3] and [4] cannot be broadcast together"))
    }

    @Test("a second backward through a freed graph stops the process")
    func backwardTwice() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let x = Tensor([1, 2] as [Float], shape: [2], requiresGrad: true)
            let loss = (x * x).sum()
            loss.backward()
            loss.backward()
        }
        #expect(stderr(result).contains("a second time: its saved tensors were freed"))
    }

    @Test("retaining the graph allows a second backward that accumulates")
    func retainedGraph() {
        let x = Tensor([1, 2] as [Float], shape: [2], requiresGrad: true)
        let loss = (x * x).sum()
        loss.backward(retainGraph: true)
        loss.backward()
        #expect(x.grad?.floats() == [4, 8])
    }

    @Test("the broadcast error names both shapes")
    func broadcastMessage() {
        #expect(throws: Shape.Mismatch.self) { try Shape.broadcast([2, 3], [4]) }
        do {
            _ = try Shape.broadcast([2, 3], [4])
        } catch {
            #expect(error.description.contains("[2, 3]") && error.description.contains("[4]"))
        }
    }

    @Test("no graph is recorded for frozen inputs or inside withNoGrad")
    func noGraphWhenNotNeeded() {
        let w = Tensor([1, 2] as [Float], shape: [2])
        let y = w * 3
        #expect(!y.requiresGrad && y.gradFunction == nil)
        let p = Tensor([1, 2] as [Float], shape: [2], requiresGrad: true)
        let z = withNoGrad { p * 3 }
        #expect(!z.requiresGrad && z.gradFunction == nil)
        #expect((p * 3).gradFunction != nil)
    }
}

/// The child process's standard error as text.
private func stderr(_ result: ExitTest.Result?) -> String {
    String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
}
