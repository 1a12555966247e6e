import Models
import TensorCore
import Testing

@Suite struct ModelInputsTests {
    @Test func droppingImagesKeepsTheTextInputs() {
        let ids = Tensor(indices: [1, 2, 3, 4], shape: [2, 2])
        let inputs = ModelInputs(inputIDs: ids, pixelValues: Tensor(zeros: [2, 1, 1, 3, 4, 4]))
        #expect(inputs.hasImages)
        #expect(!inputs.withoutImages.hasImages)
        #expect(inputs.withoutImages.batchSize == 2 && inputs.withoutImages.length == 2)
    }
}
