#if canImport(Glibc)
import Glibc
#endif

extension Tensor {
    /// A contiguous tensor with every element equal to `value`.
    public static func filled(_ value: Double, shape: [Int], dtype: DType = .float32) -> Tensor {
        let result = Tensor(zeros: shape, dtype: dtype)
        guard value != 0 else { return result }
        switch dtype {
        case .float32: result.floatPointer.update(repeating: Float(value), count: result.elementCount)
        case .float64: result.doublePointer.update(repeating: value, count: result.elementCount)
        case .int64: result.rawPointer.assumingMemoryBound(to: Int64.self).update(repeating: Int64(value), count: result.elementCount)
        case .int32: result.rawPointer.assumingMemoryBound(to: Int32.self).update(repeating: Int32(value), count: result.elementCount)
        default: fatalError("filled(_:shape:dtype:) does not support \(dtype)")
        }
        return result
    }

    /// A tensor of zeros with this tensor's shape and dtype.
    public func zerosLike() -> Tensor { Tensor(zeros: shape, dtype: dtype) }

    /// A contiguous copy with its own storage (no autograd history).
    public func copy() -> Tensor {
        let result = Tensor(zeros: shape, dtype: dtype)
        copyElements(from: self, into: result)
        return result
    }

    /// This tensor if it is contiguous, otherwise a contiguous copy. Gradients flow through.
    public func contiguous() -> Tensor {
        if isContiguous { return self }
        let result = copy()
        if Autograd.needsGraph(self) {
            result.recordOperation("contiguous", inputs: [self]) { gradient in [gradient] }
        }
        return result
    }

    /// The elements as `Float`s in row-major order (any floating-point dtype, upcast).
    public func floats() -> [Float] {
        let source = contiguousStorageView()
        let count = elementCount
        switch dtype {
        case .float32: return Array(UnsafeBufferPointer(start: source.floatPointer, count: count))
        case .float64: return UnsafeBufferPointer(start: source.doublePointer, count: count).map { Float($0) }
        case .bfloat16:
            let bits = source.rawPointer.assumingMemoryBound(to: UInt16.self)
            return (0..<count).map { BFloat16.float(fromBits: bits[$0]) }
        case .float16:
            let bits = source.rawPointer.assumingMemoryBound(to: UInt16.self)
            return (0..<count).map { HalfFloat.float(fromBits: bits[$0]) }
        default: return integers().map { Float($0) }
        }
    }

    /// The elements as `Double`s in row-major order.
    public func doubles() -> [Double] {
        if dtype == .float64 {
            let source = contiguousStorageView()
            return Array(UnsafeBufferPointer(start: source.doublePointer, count: elementCount))
        }
        return floats().map { Double($0) }
    }

    /// The elements of an integer or boolean tensor as `Int`s in row-major order.
    public func integers() -> [Int] {
        let source = contiguousStorageView()
        let count = elementCount
        let raw = source.rawPointer
        switch dtype {
        case .int64: return (0..<count).map { Int(raw.assumingMemoryBound(to: Int64.self)[$0]) }
        case .int32: return (0..<count).map { Int(raw.assumingMemoryBound(to: Int32.self)[$0]) }
        case .uint8, .bool: return (0..<count).map { Int(raw.assumingMemoryBound(to: UInt8.self)[$0]) }
        default: fatalError("integers() needs an integer tensor, got \(dtype) \(shape)")
        }
    }

    /// The single element of a one-element tensor.
    public func item() -> Double {
        ensure(elementCount == 1, "item() needs a single-element tensor, got shape \(shape)")
        return dtype.isFloatingPoint ? doubles()[0] : Double(integers()[0])
    }

    /// This tensor's data as a contiguous tensor (itself when already contiguous), never recorded.
    func contiguousStorageView() -> Tensor { isContiguous ? self : copy() }

    /// This tensor converted to another floating-point dtype (a copy; gradients flow between
    /// float32 and float64).
    public func converted(to target: DType) -> Tensor {
        if target == dtype { return self }
        let result: Tensor
        switch target {
        case .float32: result = Tensor(floats(), shape: shape)
        case .float64: result = Tensor(doubles(), shape: shape)
        case .bfloat16, .float16:
            result = Tensor(zeros: shape, dtype: target)
            let bits = result.rawPointer.assumingMemoryBound(to: UInt16.self)
            for (i, v) in floats().enumerated() {
                bits[i] = target == .bfloat16 ? BFloat16.bits(from: v) : HalfFloat.bits(from: v)
            }
        default: fatalError("converted(to:) supports floating-point targets, not \(target)")
        }
        if Autograd.needsGraph(self) && target.isComputeType {
            let sourceType = dtype
            result.recordOperation("convert", inputs: [self]) { gradient in [gradient.converted(to: sourceType)] }
        }
        return result
    }
}

/// Copies the elements of `source` (any strides) into the contiguous `destination` of equal shape.
func copyElements(from source: Tensor, into destination: Tensor) {
    ensure(source.shape == destination.shape && source.dtype == destination.dtype && destination.isContiguous, "copyElements: \(source.dtype) \(source.shape) into \(destination.dtype) \(destination.shape)")
    let size = source.dtype.byteSize
    if source.isContiguous {
        destination.rawPointer.copyMemory(from: source.rawPointer, byteCount: source.elementCount * size)
        return
    }
    let loop = StridedRows(shape: source.shape, operandStrides: [source.strides])
    let rowLength = loop.rowLength
    let innerStride = source.strides.last ?? 1
    let from = source.rawPointer
    let to = destination.rawPointer
    Parallel.forEachRange(loop.rowCount, grain: max(1, 65_536 / max(rowLength, 1))) { rows in
        loop.forEachRow(in: rows) { row, offsets in
            let out = to + row * rowLength * size
            switch size {
            case 4:
                let s = from.assumingMemoryBound(to: UInt32.self) + offsets[0]
                let d = out.assumingMemoryBound(to: UInt32.self)
                for i in 0..<rowLength { d[i] = s[i * innerStride] }
            case 8:
                let s = from.assumingMemoryBound(to: UInt64.self) + offsets[0]
                let d = out.assumingMemoryBound(to: UInt64.self)
                for i in 0..<rowLength { d[i] = s[i * innerStride] }
            case 2:
                let s = from.assumingMemoryBound(to: UInt16.self) + offsets[0]
                let d = out.assumingMemoryBound(to: UInt16.self)
                for i in 0..<rowLength { d[i] = s[i * innerStride] }
            default:
                let s = from.assumingMemoryBound(to: UInt8.self) + offsets[0]
                let d = out.assumingMemoryBound(to: UInt8.self)
                for i in 0..<rowLength { d[i] = s[i * innerStride] }
            }
        }
    }
}
