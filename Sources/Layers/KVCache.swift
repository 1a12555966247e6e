import TensorCore

/// Keys and values of past tokens for incremental decoding, one ``Layer`` per attention layer.
///
/// Each layer preallocates `[B, K, capacity, Dh]` buffers; a step appends its new keys and values
/// and attends to a strided view of the filled prefix, so nothing is copied per step beyond the
/// new entries.
public final class KVCache {
    /// The cache of one attention layer.
    public final class Layer {
        public let keys: Tensor
        public let values: Tensor
        /// The number of positions filled.
        public private(set) var length = 0

        init(batch: Int, kvHeads: Int, capacity: Int, headDimension: Int) {
            keys = Tensor(zeros: [batch, kvHeads, capacity, headDimension])
            values = Tensor(zeros: [batch, kvHeads, capacity, headDimension])
        }

        /// The maximum number of positions.
        public var capacity: Int { keys.shape[2] }

        /// Appends `[B, K, T, Dh]` keys and values and returns views of everything cached so far,
        /// `[B, K, length, Dh]`.
        public func append(keys newKeys: Tensor, values newValues: Tensor) -> (keys: Tensor, values: Tensor) {
            let count = newKeys.shape[2]
            ensure(length + count <= capacity,
                   "KV cache overflow: \(length) cached + \(count) new positions exceed the capacity \(capacity)")
            ensure(newKeys.shape == [keys.shape[0], keys.shape[1], count, keys.shape[3]] && newValues.shape == newKeys.shape,
                   "KV cache: new keys \(newKeys.shape) / values \(newValues.shape) do not fit a cache of \(keys.shape)")
            withNoGrad {
                keys.slice(axis: 2, length..<(length + count)).assign(newKeys)
                values.slice(axis: 2, length..<(length + count)).assign(newValues)
            }
            length += count
            return (keys.slice(axis: 2, 0..<length), values.slice(axis: 2, 0..<length))
        }

        /// Forgets every cached position.
        public func reset() { length = 0 }
    }

    public let layers: [Layer]

    /// A cache for `layerCount` attention layers.
    public init(layerCount: Int, batch: Int, kvHeads: Int, capacity: Int, headDimension: Int) {
        layers = (0..<layerCount).map { _ in Layer(batch: batch, kvHeads: kvHeads, capacity: capacity, headDimension: headDimension) }
    }

    /// The number of positions cached (the same in every layer).
    public var length: Int { layers.first?.length ?? 0 }
}
