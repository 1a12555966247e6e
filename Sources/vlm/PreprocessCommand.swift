import ArgumentParser
import Checkpoint
import Foundation
import Media
import Processing

/// `vlm preprocess`: images through a checkpoint's Mllama image processor, into a safetensors file.
struct PreprocessCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preprocess",
        abstract: "Turn images into Mllama vision inputs (pixel_values, aspect_ratio_ids, aspect_ratio_mask).",
        discussion: """
            Reads DIR/preprocessor_config.json and treats the images as one sample, in order. OUT \
            receives pixel_values [1, N, tiles, 3, H, W] (float32), aspect_ratio_ids [1, N] and \
            aspect_ratio_mask [1, N, tiles] (int64), written atomically. Example:
              vlm preprocess --model Llama-3.2-11B-Vision --image cat.png --image dog.jpg --out pixels.safetensors
            """)

    @Option(help: "A checkpoint directory holding preprocessor_config.json.")
    var model: String

    @Option(help: "A PNG or JPEG image (repeatable; the order is the prompt's <|image|> order).")
    var image: [String] = []

    @Option(help: "Where to write the tensors (safetensors; written atomically, through links; '-' is standard output).")
    var out: String

    func validate() throws {
        if image.isEmpty { throw ValidationError("give at least one --image") }
    }

    func run() throws {
        let configURL = URL(fileURLWithPath: model).appendingPathComponent(MllamaImageProcessorConfig.fileName)
        try requireFile(configURL.path)
        let config = try MllamaImageProcessorConfig.load(from: configURL)
        let processor: MllamaImageProcessor
        do { processor = try MllamaImageProcessor(config: config) } catch let error as ProcessingError {
            throw CommandFailure("\(configURL.path): \(error.message)")
        }
        let images = try image.map { try loadImageFile($0) }
        let batch = try processor.preprocess([images])
        try writeSafetensors(tensors: [("pixel_values", batch.pixelValues), ("aspect_ratio_ids", batch.aspectRatioIDs),
                                       ("aspect_ratio_mask", batch.aspectRatioMask)],
                             metadata: ["num_tiles": batch.numTiles[0].map(String.init).joined(separator: ",")],
                             to: outputURL(out))
        let tiles = zip(image, batch.arrangements[0]).map { "\($0): \($1.rows)x\($1.columns) tiles" }.joined(separator: ", ")
        report("wrote pixel_values \(batch.pixelValues.shape) to \(out) (\(tiles))", dataPath: out)
    }
}
