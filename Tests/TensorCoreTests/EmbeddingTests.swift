import Testing
import TensorCore
import _TestSupport

@Suite("Embedding lookup")
struct EmbeddingTests {
    @Test("picks table rows for int64 and int32 ids of any shape")
    func lookup() {
        let table = randomFloats([10, 6], seed: 1)
        let values = table.floats()
        let ids = [3, 0, 9, 3, 7, 1]
        var expected = [Float]()
        for id in ids { expected += values[(id * 6)..<(id * 6 + 6)] }
        for dtype in [DType.int64, .int32] {
            let out = embedding(Tensor(indices: ids, shape: [2, 3], dtype: dtype), table: table)
            #expect(out.shape == [2, 3, 6])
            #expect(out.floats() == expected, "ids \(dtype)")
        }
    }

    @Test("a bfloat16 table is upcast row by row to float32")
    func bfloat16Table() {
        let table = randomFloats([5, 20], seed: 2).converted(to: .bfloat16)
        let rows = table.floats()
        let out = embedding(Tensor(indices: [4, 2], shape: [2]), table: table)
        #expect(out.dtype == .float32)
        #expect(out.floats() == Array(rows[80..<100] + rows[40..<60]))
        let half = table.converted(to: .float16)
        #expect(embedding(Tensor(indices: [1], shape: [1]), table: half).floats() == Array(half.floats()[20..<40]))
    }

    @Test("the table gradient matches finite differences and repeated ids accumulate")
    func gradients() {
        let table = randomDoubles([6, 4], seed: 3)
        let ids = Tensor(indices: [2, 5, 2, 0, 2], shape: [5])
        #expect(gradientCheck([table]) { embedding(ids, table: $0[0]) } == nil)
        table.grad = nil
        embedding(ids, table: table).sum().backward()
        let grad = table.grad!.doubles()
        #expect(Array(grad[8..<12]) == [3, 3, 3, 3])
        #expect(Array(grad[4..<8]) == [0, 0, 0, 0])
    }

    @Test("a frozen table records no graph")
    func frozenTable() {
        let out = embedding(Tensor(indices: [1], shape: [1]), table: randomFloats([3, 2], seed: 4))
        #expect(!out.requiresGrad)
    }

    @Test("an id outside the table traps with a message naming the id and V")
    func outOfRangeId() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = embedding(Tensor(indices: [1, 3], shape: [2]), table: Tensor(zeros: [3, 2]))
        }
        let message = result.map { String(decoding: $0.standardErrorContent, as: UTF8.self) } ?? ""
        #expect(message.contains("id 3") && message.contains("V = 3"), "\(message)")
    }
}
