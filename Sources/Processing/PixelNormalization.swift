/// Per channel, the float32 value of each 8-bit sample after `do_rescale` and `do_normalize`, as
/// transformers' numpy path computes it: `Float(Double(v) · rescale_factor)` (rescaled in float64,
/// stored as float32), then `(x − Float(mean)) / Float(std)` in float32.
func pixelNormalizationTable(doRescale: Bool, rescaleFactor: Double, doNormalize: Bool, mean: [Double],
                             std: [Double]) -> [[Float]] {
    (0 ..< 3).map { channel in
        let mean = Float(mean[channel]), std = Float(std[channel])
        return (0 ... 255).map { sample -> Float in
            var value = doRescale ? Float(Double(sample) * rescaleFactor) : Float(sample)
            if doNormalize { value = (value - mean) / std }
            return value
        }
    }
}
