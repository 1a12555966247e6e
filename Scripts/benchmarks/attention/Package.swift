// swift-tools-version:6.0
// Attention timing harness (not part of the library or CI): forward and forward+backward of
// scaledDotProductAttention for the shapes in the benchmark report, next to
// torch_attention_benchmark.py, which times torch's scaled_dot_product_attention the same way.
// Run from this directory: swift run -c release attention-benchmark [small|long|decode]
import Foundation
import PackageDescription

// The repository root, three levels up; SwiftPM names a path dependency after its directory.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

let package = Package(
    name: "attention-benchmark",
    dependencies: [.package(path: root.path)],
    targets: [
        .executableTarget(name: "attention-benchmark",
                          dependencies: [.product(name: "TensorCore", package: root.lastPathComponent)]),
    ],
    swiftLanguageModes: [.v5]
)
