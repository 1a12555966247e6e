import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A cache of freed large buffers, reused by later allocations of the same size.
///
/// A training step allocates the same activations and gradients every time; handing their buffers
/// back and forth through the system allocator costs a page fault per page each step (glibc returns
/// large blocks to the kernel). The pool keeps up to ``capacity`` bytes of freed blocks of 256 KiB
/// or more, keyed by exact rounded size, and hands them out again — the idea of PyTorch's caching
/// allocator, without its splitting. Blocks larger than a quarter of the capacity (model weights
/// being loaded, say) bypass it.
enum BufferPool {
    /// The largest number of bytes kept for reuse (`VLMKIT_BUFFER_POOL_MB`, default 1024).
    static let capacity: Int = {
        if let text = getenv("VLMKIT_BUFFER_POOL_MB").map({ String(cString: $0) }), let megabytes = Int(text), megabytes >= 0 {
            return megabytes << 20
        }
        return 1 << 30
    }()

    /// Blocks smaller than this go straight to malloc, which serves them well.
    static let minimumPooledBytes = 256 << 10

    private struct State {
        var free: [Int: [UnsafeMutableRawPointer]] = [:]
        var cachedBytes = 0
    }

    private static let state = Mutex(State())

    /// Whether blocks of `roundedBytes` are pooled.
    static func pools(_ roundedBytes: Int) -> Bool {
        roundedBytes >= minimumPooledBytes && roundedBytes <= capacity / 4
    }

    /// A cached block of exactly `roundedBytes`, if one is free.
    static func take(_ roundedBytes: Int) -> UnsafeMutableRawPointer? {
        guard pools(roundedBytes) else { return nil }
        return state.withLock { state in
            guard let block = state.free[roundedBytes]?.popLast() else { return nil }
            state.cachedBytes -= roundedBytes
            return block
        }
    }

    /// Returns a block for reuse, or frees it when the pool is full.
    static func give(_ block: UnsafeMutableRawPointer, roundedBytes: Int) {
        let kept = pools(roundedBytes) && state.withLock { state in
            guard state.cachedBytes + roundedBytes <= capacity else { return false }
            state.free[roundedBytes, default: []].append(block)
            state.cachedBytes += roundedBytes
            return true
        }
        if !kept { free(block) }
    }
}

/// Frees every buffer the pool keeps for reuse (between independent jobs in one process, so that
/// one job's cached activations do not count in the next one's memory).
public func releaseCachedTensorBuffers() { BufferPool.releaseAll() }

extension BufferPool {
    static func releaseAll() {
        let blocks = state.withLock { state -> [UnsafeMutableRawPointer] in
            let all = state.free.values.flatMap { $0 }
            state.free = [:]
            state.cachedBytes = 0
            return all
        }
        for block in blocks { free(block) }
    }
}
