/// Element-wise arithmetic with NumPy broadcasting: `+`, `-`, `*`, `/`, and their scalar forms.
///
/// Backward: each input's gradient is the output gradient times the local derivative, summed
/// back over the axes that input was broadcast along (``Tensor/sum(toShape:)``).

/// The four broadcasting binary operations.
@usableFromInline
enum BinaryOperation: String, Sendable {
    case add, subtract, multiply, divide

    @inlinable @inline(__always)
    func apply<T: ComputeScalar>(_ x: T, _ y: T) -> T {
        switch self {
        case .add: x + y
        case .subtract: x - y
        case .multiply: x * y
        case .divide: x / y
        }
    }
}

/// Runs `operation` over broadcast operands into a new contiguous tensor.
@inline(__always)
private func broadcastKernel<T: ComputeScalar>(_ a: Tensor, _ b: Tensor, into out: Tensor,
                                                _ operation: BinaryOperation, _: T.Type) {
    let pa = a.pointer(as: T.self), pb = b.pointer(as: T.self), po = out.pointer(as: T.self)
    if a.shape == b.shape && a.isContiguous && b.isContiguous {
        Parallel.forEachRange(out.elementCount) { range in
            switch operation {
            case .add: for i in range { po[i] = pa[i] + pb[i] }
            case .subtract: for i in range { po[i] = pa[i] - pb[i] }
            case .multiply: for i in range { po[i] = pa[i] * pb[i] }
            case .divide: for i in range { po[i] = pa[i] / pb[i] }
            }
        }
        return
    }
    let shape = out.shape
    let sa = a.broadcastStrides(to: shape), sb = b.broadcastStrides(to: shape)
    let loop = StridedRows(shape: shape, operandStrides: [sa, sb])
    let n = loop.rowLength
    let ia = sa.last ?? 0, ib = sb.last ?? 0
    Parallel.forEachRange(loop.rowCount, grain: max(1, 32_768 / max(n, 1))) { rows in
        loop.forEachRow(in: rows) { row, offsets in
            let x = pa + offsets[0], y = pb + offsets[1], o = po + row * n
            // The common layouts get loops the compiler can vectorise.
            if ia == 1 && ib == 1 {
                for i in 0..<n { o[i] = operation.apply(x[i], y[i]) }
            } else if ia == 1 && ib == 0 {
                let c = y[0]
                for i in 0..<n { o[i] = operation.apply(x[i], c) }
            } else if ia == 0 && ib == 1 {
                let c = x[0]
                for i in 0..<n { o[i] = operation.apply(c, y[i]) }
            } else {
                for i in 0..<n { o[i] = operation.apply(x[i * ia], y[i * ib]) }
            }
        }
    }
}

extension Tensor {
    /// Applies a broadcasting binary operation, recording its backward when needed.
    @usableFromInline
    func binary(_ other: Tensor, _ operation: BinaryOperation) -> Tensor {
        ensure(dtype == other.dtype,
                     "\(operation.rawValue): dtypes differ (\(dtype) \(shape) vs \(other.dtype) \(other.shape))")
        let shape: [Int]
        do { shape = try Shape.broadcast(self.shape, other.shape) } catch {
            fatalError("\(operation.rawValue): \(error)")
        }
        let out = Tensor(uninitialized: shape, dtype: dtype)  // written in full by the kernel
        dispatchFloat(dtype, operation.rawValue,
                      float: { broadcastKernel(self, other, into: out, operation, Float.self) },
                      double: { broadcastKernel(self, other, into: out, operation, Double.self) })
        guard Autograd.needsGraph(self, other) else { return out }
        let lhs = self.detached(), rhs = other.detached()
        let lhsNeeds = requiresGrad, rhsNeeds = other.requiresGrad
        let lhsShape = self.shape, rhsShape = other.shape
        switch operation {
        case .add:
            out.recordOperation("add", inputs: [self, other]) { g in
                [lhsNeeds ? g.sum(toShape: lhsShape) : nil, rhsNeeds ? g.sum(toShape: rhsShape) : nil]
            }
        case .subtract:
            out.recordOperation("subtract", inputs: [self, other]) { g in
                [lhsNeeds ? g.sum(toShape: lhsShape) : nil, rhsNeeds ? (-g).sum(toShape: rhsShape) : nil]
            }
        case .multiply:
            // Saves both operands.
            out.recordOperation("multiply", inputs: [self, other]) { g in
                [lhsNeeds ? (g * rhs).sum(toShape: lhsShape) : nil, rhsNeeds ? (g * lhs).sum(toShape: rhsShape) : nil]
            }
        case .divide:
            // Saves both operands: d(x/y)/dx = 1/y, d(x/y)/dy = -x/y².
            out.recordOperation("divide", inputs: [self, other]) { g in
                [lhsNeeds ? (g / rhs).sum(toShape: lhsShape) : nil,
                 rhsNeeds ? (-(g * lhs) / (rhs * rhs)).sum(toShape: rhsShape) : nil]
            }
        }
        return out
    }

    /// A scalar of this tensor's dtype, for broadcasting.
    @usableFromInline
    func scalarLike(_ value: Double) -> Tensor { Tensor(scalar: value, dtype: dtype) }

    /// Adds `other` (broadcast to this shape) into this tensor's storage. Not recorded by autograd:
    /// for gradient buffers and optimiser state.
    public func addInPlace(_ other: Tensor) {
        ensure(isContiguous, "addInPlace needs a contiguous destination, got strides \(strides)")
        ensure(dtype == other.dtype, "addInPlace: dtypes differ (\(dtype) vs \(other.dtype))")
        let target = shape
        do { _ = try Shape.broadcast(target, other.shape) } catch { fatalError("addInPlace: \(error)") }
        dispatchFloat(dtype, "addInPlace",
                      float: { broadcastKernel(self, other, into: self, .add, Float.self) },
                      double: { broadcastKernel(self, other, into: self, .add, Double.self) })
    }

    /// ``addInPlace(_:)`` returning `self`.
    @discardableResult
    public func addingInPlace(_ other: Tensor) -> Tensor {
        addInPlace(other)
        return self
    }

    public static func + (lhs: Tensor, rhs: Tensor) -> Tensor { lhs.binary(rhs, .add) }
    public static func - (lhs: Tensor, rhs: Tensor) -> Tensor { lhs.binary(rhs, .subtract) }
    public static func * (lhs: Tensor, rhs: Tensor) -> Tensor { lhs.binary(rhs, .multiply) }
    public static func / (lhs: Tensor, rhs: Tensor) -> Tensor { lhs.binary(rhs, .divide) }

    public static func + (lhs: Tensor, rhs: Double) -> Tensor { lhs.binary(lhs.scalarLike(rhs), .add) }
    public static func - (lhs: Tensor, rhs: Double) -> Tensor { lhs.binary(lhs.scalarLike(rhs), .subtract) }
    public static func * (lhs: Tensor, rhs: Double) -> Tensor { lhs.binary(lhs.scalarLike(rhs), .multiply) }
    public static func / (lhs: Tensor, rhs: Double) -> Tensor { lhs.binary(lhs.scalarLike(rhs), .divide) }
    public static func + (lhs: Double, rhs: Tensor) -> Tensor { rhs.scalarLike(lhs).binary(rhs, .add) }
    public static func - (lhs: Double, rhs: Tensor) -> Tensor { rhs.scalarLike(lhs).binary(rhs, .subtract) }
    public static func * (lhs: Double, rhs: Tensor) -> Tensor { rhs.scalarLike(lhs).binary(rhs, .multiply) }
    public static func / (lhs: Double, rhs: Tensor) -> Tensor { rhs.scalarLike(lhs).binary(rhs, .divide) }

    /// Negation.
    public static prefix func - (operand: Tensor) -> Tensor { operand * -1 }
}
