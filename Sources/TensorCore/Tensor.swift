/// An n-dimensional array with reverse-mode automatic differentiation.
///
/// A tensor is a view — `shape`, `strides` and `offset`, counted in elements — of a ``Storage``.
/// Reshaping a contiguous tensor, transposing, permuting and slicing make new views of the same
/// storage; kernels that need contiguous input call ``contiguous()``, which copies only when needed.
///
/// Tensors are reference types, as in PyTorch: a parameter is one object whose ``grad`` accumulates
/// across backward passes, and the autograd graph links result tensors to the nodes that made them.
/// A graph is recorded only when some input ``requiresGrad`` and gradient mode is on (see
/// ``withNoGrad(_:)``), so frozen weights and inference cost nothing extra.
public final class Tensor: @unchecked Sendable {
    /// The bytes this tensor views.
    public let storage: Storage
    /// The element type.
    public let dtype: DType
    /// The size of each dimension.
    public let shape: [Int]
    /// The distance, in elements, between neighbours along each dimension.
    public let strides: [Int]
    /// The index, in elements, of the first element within ``storage``.
    public let offset: Int

    /// Whether gradients flow to this tensor. Set it on leaves (parameters); results of operations
    /// inherit it from their inputs.
    public var requiresGrad: Bool {
        didSet {
            ensure(!requiresGrad || dtype.isComputeType,
                         "only float32/float64 tensors can require gradients; this one is \(dtype) \(shape)")
        }
    }
    /// The accumulated gradient of a leaf that requires gradients, after ``backward(gradient:)``.
    public var grad: Tensor?
    /// The graph node that produced this tensor, for non-leaf results that need gradients.
    public internal(set) var gradFunction: GraphNode?

    /// Creates a view of `storage`. The view must lie within the storage.
    public init(storage: Storage, dtype: DType, shape: [Int], strides: [Int]? = nil, offset: Int = 0,
                requiresGrad: Bool = false) {
        ensure(shape.allSatisfy { $0 >= 0 }, "tensor shape \(shape) has a negative dimension")
        let strides = strides ?? Shape.contiguousStrides(shape)
        ensure(strides.count == shape.count, "strides \(strides) do not match shape \(shape)")
        if Shape.elementCount(shape) > 0 {
            var lastIndex = offset
            for (size, stride) in zip(shape, strides) { lastIndex += (size - 1) * max(stride, 0) }
            ensure(offset >= 0 && (lastIndex + 1) * dtype.byteSize <= storage.byteCount,
                         "a \(dtype) view of shape \(shape) at offset \(offset) overruns its storage of \(storage.byteCount) bytes")
        }
        self.storage = storage
        self.dtype = dtype
        self.shape = shape
        self.strides = strides
        self.offset = offset
        self.requiresGrad = false
        if requiresGrad { self.requiresGrad = true }
    }

    /// A new zero-filled contiguous tensor.
    public convenience init(zeros shape: [Int], dtype: DType = .float32, requiresGrad: Bool = false) {
        let storage = Storage(byteCount: Shape.elementCount(shape) * dtype.byteSize)
        self.init(storage: storage, dtype: dtype, shape: shape, requiresGrad: requiresGrad)
    }

    /// A new contiguous tensor whose elements are not initialised: for kernel outputs that are
    /// written in full before anything reads them.
    public convenience init(uninitialized shape: [Int], dtype: DType = .float32) {
        let storage = Storage(byteCount: Shape.elementCount(shape) * dtype.byteSize, zeroed: false)
        self.init(storage: storage, dtype: dtype, shape: shape)
    }

    /// A new float32 tensor holding `values` (row-major) with the given shape.
    public convenience init(_ values: [Float], shape: [Int], requiresGrad: Bool = false) {
        ensure(values.count == Shape.elementCount(shape),
                     "\(values.count) values cannot fill a tensor of shape \(shape)")
        self.init(zeros: shape, dtype: .float32)
        values.withUnsafeBufferPointer { source in
            storage.baseAddress.copyMemory(from: source.baseAddress!, byteCount: values.count * 4)
        }
        if requiresGrad { self.requiresGrad = true }
    }

    /// A new float64 tensor holding `values` (row-major) with the given shape.
    public convenience init(_ values: [Double], shape: [Int], requiresGrad: Bool = false) {
        ensure(values.count == Shape.elementCount(shape),
                     "\(values.count) values cannot fill a tensor of shape \(shape)")
        self.init(zeros: shape, dtype: .float64)
        values.withUnsafeBufferPointer { source in
            storage.baseAddress.copyMemory(from: source.baseAddress!, byteCount: values.count * 8)
        }
        if requiresGrad { self.requiresGrad = true }
    }

    /// A new integer tensor (token ids, indices) holding `values` with the given shape.
    public convenience init(indices values: [Int], shape: [Int], dtype: DType = .int64) {
        ensure(dtype == .int64 || dtype == .int32, "index tensors are int64 or int32, not \(dtype)")
        ensure(values.count == Shape.elementCount(shape),
                     "\(values.count) values cannot fill a tensor of shape \(shape)")
        self.init(zeros: shape, dtype: dtype)
        if dtype == .int64 {
            let out = storage.baseAddress.assumingMemoryBound(to: Int64.self)
            for (i, v) in values.enumerated() { out[i] = Int64(v) }
        } else {
            let out = storage.baseAddress.assumingMemoryBound(to: Int32.self)
            for (i, v) in values.enumerated() { out[i] = Int32(truncatingIfNeeded: v) }
        }
    }

    /// A scalar (rank-0) float tensor.
    public convenience init(scalar value: Double, dtype: DType = .float32) {
        ensure(dtype.isComputeType, "scalar tensors are float32 or float64")
        if dtype == .float64 { self.init([value], shape: []) } else { self.init([Float(value)], shape: []) }
    }

    /// The number of dimensions.
    @inlinable public var rank: Int { shape.count }
    /// The number of elements.
    public var elementCount: Int { Shape.elementCount(shape) }
    /// Whether the elements are laid out row-major without gaps.
    public var isContiguous: Bool { strides == Shape.contiguousStrides(shape) || elementCount <= 1 }
    /// Whether this tensor was created by the user rather than by an operation.
    public var isLeaf: Bool { gradFunction == nil }

    /// The address of the first element (`offset` applied).
    public var rawPointer: UnsafeMutableRawPointer { storage.baseAddress + offset * dtype.byteSize }

    /// The size of dimension `axis`; negative axes count from the end.
    public func size(_ axis: Int) -> Int { shape[Shape.normalize(axis: axis, rank: rank)] }

    /// Typed pointer to the first element of a float32 tensor.
    public var floatPointer: UnsafeMutablePointer<Float> {
        ensure(dtype == .float32, "expected a float32 tensor, got \(dtype) \(shape)")
        return rawPointer.assumingMemoryBound(to: Float.self)
    }

    /// Typed pointer to the first element of a float64 tensor.
    public var doublePointer: UnsafeMutablePointer<Double> {
        ensure(dtype == .float64, "expected a float64 tensor, got \(dtype) \(shape)")
        return rawPointer.assumingMemoryBound(to: Double.self)
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        "Tensor(\(dtype), shape: \(shape)\(requiresGrad ? ", requiresGrad" : ""))"
    }
}
