// swift-tools-version:6.0
// VLMKit: Llama 3.2 Vision-style vision-language models in Swift, on CPUs.
// Targets import one way: C libraries <- TensorCore <- Layers <- Models <- Training <- vlm.
import PackageDescription

// Opt-in CPU tuning: `VLMKIT_TARGET_CPU=x86-64-v3 swift build -c release` (or x86-64-v4, znver4,
// native…) compiles the kernels for that CPU, so the 16-lane loops use AVX2 / AVX-512 instead of
// the SSE2 baseline. Off by default: the flag is an unsafeFlag (a package using it cannot be a
// dependency of another package), and the binary would not run on older CPUs.
let targetCPU = Context.environment["VLMKIT_TARGET_CPU"].flatMap { $0.isEmpty ? nil : $0 }
let kernelSettings: [SwiftSetting] = targetCPU.map { [.unsafeFlags(["-target-cpu", $0])] } ?? []

let package = Package(
    name: "VLMKit",
    products: [
        .library(name: "TensorCore", targets: ["TensorCore"]),
        .library(name: "Layers", targets: ["Layers"]),
        .library(name: "Checkpoint", targets: ["Checkpoint"]),
        .library(name: "Media", targets: ["Media"]),
        .library(name: "Tokenization", targets: ["Tokenization"]),
        .library(name: "Models", targets: ["Models"]),
        .library(name: "Processing", targets: ["Processing"]),
        .library(name: "Collectives", targets: ["Collectives"]),
        .library(name: "Training", targets: ["Training"]),
        .library(name: "World", targets: ["World"]),
        .executable(name: "vlm", targets: ["vlm"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // System libraries, each found through pkg-config.
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", pkgConfig: "libturbojpeg", providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),

        // Hot loops in C, one version per instruction set, chosen at run time.
        .target(name: "CKernels"),

        // Libraries.
        .target(name: "TensorCore", dependencies: ["COpenBLAS", "CKernels"], swiftSettings: kernelSettings),
        .target(name: "Layers", dependencies: ["TensorCore"], swiftSettings: kernelSettings),
        .target(name: "Checkpoint", dependencies: ["TensorCore", "CZstd"]),
        // libpng reports errors by longjmp, which must not cross Swift frames: this C target keeps
        // every libpng call behind setjmp. Only Media uses it.
        .target(name: "CPNGShim", dependencies: ["CPNG"]),
        .target(name: "Media", dependencies: ["CPNGShim", "CJPEG"]),
        .target(name: "Tokenization"),
        .target(name: "Models", dependencies: ["TensorCore", "Layers", "Checkpoint"], swiftSettings: kernelSettings),
        // Images and prompts -> model inputs (the Mllama image processor and processor).
        .target(name: "Processing", dependencies: ["Media", "TensorCore", "Checkpoint", "Tokenization"]),

        // The ranks of a data-parallel job and their collectives (sum, broadcast, gather) over MPI.
        .target(name: "Collectives", dependencies: ["CMPI"]),
        // Datasets, the trainer loop, stages and the pipeline runner (the library never prints).
        .target(name: "Training", dependencies: ["TensorCore", "Layers", "Checkpoint", "Media", "Tokenization",
                                                 "Processing", "Models", "Collectives", .product(name: "Yams", package: "Yams")],
                swiftSettings: kernelSettings),
        // The built-in image–text world: scenes rendered to PNG, their records, captions, questions.
        .target(name: "World", dependencies: ["Media"]),

        // The command-line tool.
        .executableTarget(
            name: "vlm",
            dependencies: [
                "TensorCore", "Layers", "Checkpoint", "Media", "Tokenization", "Models", "Processing",
                "Training", "World", "Collectives",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Yams", package: "Yams"),
            ]),

        // Tests.
        .target(name: "_TestSupport", dependencies: ["TensorCore"], path: "Sources/_TestSupport"),
        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore", "_TestSupport"]),
        .testTarget(name: "LayersTests", dependencies: ["Layers", "_TestSupport"]),
        .testTarget(name: "CheckpointTests", dependencies: ["Checkpoint", "_TestSupport"]),
        .testTarget(name: "MediaTests", dependencies: ["Media", "_TestSupport"]),
        .testTarget(name: "TokenizationTests", dependencies: ["Tokenization", "Checkpoint", "_TestSupport"]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "Checkpoint", "_TestSupport",
                                                       .product(name: "Yams", package: "Yams")]),
        // The command line, run in-process through the executable target.
        .testTarget(name: "vlmTests", dependencies: ["vlm", "Models", "Layers", "Checkpoint", "Tokenization", "Training", "Processing",
                                                   "Collectives", "_TestSupport"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Models", "Processing", "Media", "Tokenization",
                                                         "Checkpoint", "Layers", "Collectives", "_TestSupport"]),
        .testTarget(name: "WorldTests", dependencies: ["World", "Media", "_TestSupport"]),
        .testTarget(name: "ProcessingTests", dependencies: ["Processing", "Media", "Checkpoint", "Tokenization", "_TestSupport"]),
    ],
    // Kernels hand raw buffers to worker threads; Swift 5 mode keeps that legal without wrapping
    // every pointer in a Sendable box. Types shared across threads are still marked Sendable.
    swiftLanguageModes: [.v5]
)
