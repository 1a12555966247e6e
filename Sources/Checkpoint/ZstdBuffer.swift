import CZstd
#if canImport(Glibc)
import Glibc
#endif
import TensorCore

/// Heap memory from `malloc` that frees itself; lets a decompressed buffer grow with `realloc`
/// and then be viewed by a ``Storage`` without another copy.
final class _MallocBuffer {
    private(set) var pointer: UnsafeMutableRawPointer?
    private(set) var capacity = 0

    /// Grows (or first allocates) to `newCapacity` bytes, keeping the contents; `false` if out of memory.
    func reserve(_ newCapacity: Int) -> Bool {
        guard newCapacity > capacity else { return true }
        guard let grown = realloc(pointer, newCapacity) else { return false }
        pointer = grown
        capacity = newCapacity
        return true
    }

    deinit { free(pointer) }
}

extension Zstd {
    /// The most we allocate up front from a frame's declared size; a corrupt header declaring
    /// petabytes must fail as corrupt data, not as an allocation.
    static let largestTrustedDeclaredSize: UInt64 = 1 << 40

    /// Decompresses `input` (one or more zstd frames) into a single buffer viewed as ``Storage``.
    ///
    /// When the first frame declares its content size (VLMKit's writer always does) the buffer is
    /// allocated once at that size; otherwise it grows geometrically with `realloc`. The compressed
    /// input is typically a memory mapping, so at no point are more than one compressed and one
    /// decompressed copy of the data alive.
    ///
    /// - Throws: ``Failure`` naming `source` for corrupt or truncated data or when memory runs out.
    public static func decompressToStorage(_ input: UnsafeRawBufferPointer, source: String) throws -> Storage {
        guard let stream = ZSTD_createDStream() else { throw Failure(source: source, reason: "out of memory") }
        defer { ZSTD_freeDStream(stream) }
        guard input.count > 0 else { throw Failure(source: source, reason: "file is empty, not zstd data") }
        let buffer = _MallocBuffer()
        var capacity = max(input.count * 2, 1 << 16)
        let declared = ZSTD_getFrameContentSize(input.baseAddress, input.count)
        // ZSTD_CONTENTSIZE_UNKNOWN and _ERROR are the two largest UInt64 values.
        if declared < UInt64.max - 1 {
            guard declared <= largestTrustedDeclaredSize else {
                throw Failure(source: source, reason: "zstd frame declares an implausible size of \(declared) bytes")
            }
            // One spare byte: a full buffer would otherwise look like more output is pending.
            capacity = Int(declared) + 1
        }
        guard buffer.reserve(capacity) else {
            throw Failure(source: source, reason: "cannot allocate \(capacity) bytes to decompress into")
        }
        var inBuffer = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        var produced = 0
        var lastResult = 0
        while true {
            if produced == buffer.capacity {
                guard buffer.reserve(buffer.capacity * 2) else {
                    throw Failure(source: source, reason: "cannot allocate \(buffer.capacity * 2) bytes to decompress into")
                }
            }
            let consumedBefore = inBuffer.pos, producedBefore = produced
            var outBuffer = ZSTD_outBuffer(dst: buffer.pointer, size: buffer.capacity, pos: produced)
            let result = ZSTD_decompressStream(stream, &outBuffer, &inBuffer)
            if ZSTD_isError(result) != 0 {
                throw Failure(source: source, reason: "corrupt zstd data near compressed byte \(inBuffer.pos): "
                              + String(cString: ZSTD_getErrorName(result)))
            }
            produced = outBuffer.pos
            lastResult = result
            // 0 means a frame is fully decoded and flushed; with no input left we are done. The
            // decoder may also hold consumed input it has not decoded yet, so otherwise keep calling
            // until a call makes no progress (then the stream was cut short).
            if inBuffer.pos == inBuffer.size && result == 0 { break }
            if inBuffer.pos == consumedBefore && produced == producedBefore && produced < buffer.capacity { break }
        }
        guard lastResult == 0 else {
            throw Failure(source: source, reason: "zstd stream is truncated (ends inside a frame)")
        }
        return Storage(borrowing: buffer.pointer!, byteCount: produced, keepingAlive: buffer)
    }
}

/// Compresses a stream of bytes into zstd frames, handing compressed chunks to `sink`.
///
/// Used by the `.safetensors.zst` writer to compress while writing through ``AtomicFile``, so the
/// compressed file is never held in memory whole.
public final class ZstdCompressor {
    private let stream: OpaquePointer
    private let sink: (UnsafeRawBufferPointer) throws -> Void
    private var output: [UInt8]
    private let source: String

    /// - Parameters:
    ///   - level: zstd compression level (1 fast … 19 small; 3 is zstd's default).
    ///   - pledgedSize: the total number of bytes that will be written, recorded in the frame
    ///     header so that readers allocate once; `nil` when unknown.
    ///   - source: names the destination in errors.
    public init(level: Int32 = 3, pledgedSize: Int?, source: String,
                sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let stream = ZSTD_createCCtx() else { throw Zstd.Failure(source: source, reason: "out of memory") }
        self.stream = stream
        self.sink = sink
        self.source = source
        self.output = [UInt8](repeating: 0, count: ZSTD_CStreamOutSize())
        try check(ZSTD_CCtx_setParameter(stream, ZSTD_c_compressionLevel, level))
        try check(ZSTD_CCtx_setParameter(stream, ZSTD_c_checksumFlag, 1))
        if let pledgedSize { try check(ZSTD_CCtx_setPledgedSrcSize(stream, UInt64(pledgedSize))) }
    }

    deinit { ZSTD_freeCCtx(stream) }

    private func check(_ code: Int) throws {
        if ZSTD_isError(code) != 0 {
            throw Zstd.Failure(source: source, reason: "zstd compression failed: " + String(cString: ZSTD_getErrorName(code)))
        }
    }

    /// Compresses `bytes`, passing any finished output to the sink.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        var input = ZSTD_inBuffer(src: bytes.baseAddress, size: bytes.count, pos: 0)
        while input.pos < input.size {
            _ = try pump(&input, ZSTD_e_continue)
        }
    }

    /// Ends the frame and flushes everything to the sink.
    public func finish() throws {
        var input = ZSTD_inBuffer(src: nil, size: 0, pos: 0)
        while try pump(&input, ZSTD_e_end) != 0 {}
    }

    private func pump(_ input: inout ZSTD_inBuffer, _ mode: ZSTD_EndDirective) throws -> Int {
        let capacity = output.count
        return try output.withUnsafeMutableBytes { raw -> Int in
            var out = ZSTD_outBuffer(dst: raw.baseAddress, size: capacity, pos: 0)
            let remaining = ZSTD_compressStream2(stream, &out, &input, mode)
            try check(remaining)
            if out.pos > 0 { try sink(UnsafeRawBufferPointer(rebasing: raw[0..<out.pos])) }
            return remaining
        }
    }
}

extension Zstd {
    /// The decompressed size the first frame of `input` declares, or `nil` when it does not say
    /// (or `input` is not zstd).
    public static func declaredContentSize(_ input: UnsafeRawBufferPointer) -> Int? {
        guard input.count > 0 else { return nil }
        let size = ZSTD_getFrameContentSize(input.baseAddress, input.count)
        return size < UInt64.max - 1 && size <= UInt64(Int.max) ? Int(size) : nil
    }
}
