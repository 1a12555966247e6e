import Testing
import TensorCore
import _TestSupport

/// transformers' `LlamaRotaryEmbedding` tables for Dh = 128, rope_theta = 500 000, computed with
/// torch by `Scripts/fixtures/make_rotary_reference.py` (its output pasted below).
private enum TorchReference {
    static let positions = [0, 1, 8191, 8192, 20000, 131071]
    static let frequencyIndices = [0, 10, 28, 30, 33, 35, 36, 63]
    static let columns = [0, 10, 30, 33, 63, 94, 127]

    static let plainFrequencies: [Double] = [1.000000000e+00, 1.286873817e-01, 3.211446106e-03, 2.131119603e-03, 1.152042649e-03, 7.644969737e-04, 6.227724371e-04, 2.455140702e-06]
    static let plainCos: [[Double]] = [
        [1.000000000e+00, 1.000000000e+00, 1.000000000e+00, 1.000000000e+00, 1.000000000e+00, 1.000000000e+00, 1.000000000e+00],
        [5.403023362e-01, 9.917311668e-01, 9.999977350e-01, 9.999993443e-01, 1.000000000e+00, 9.999977350e-01, 1.000000000e+00],
        [-6.463904977e-01, 7.396624982e-02, 1.763151437e-01, -9.999327064e-01, 9.997978210e-01, 1.763151437e-01, 9.997978210e-01],
        [2.928018272e-01, 2.013108432e-01, 1.784118712e-01, -9.999186397e-01, 9.997977614e-01, 1.784118712e-01, 9.997977614e-01],
        [8.131996989e-01, -7.086768150e-01, 2.093301862e-01, -4.978269935e-01, 9.987946749e-01, 2.093301862e-01, 9.987946749e-01],
        [-8.179835081e-01, -9.996256232e-01, -9.627574682e-01, 9.794808626e-01, 9.486683607e-01, -9.627574682e-01, 9.486683607e-01],
    ]
    static let plainSin: [[Double]] = [
        [0.000000000e+00, 0.000000000e+00, 0.000000000e+00, 0.000000000e+00, 0.000000000e+00, 0.000000000e+00, 0.000000000e+00],
        [8.414709568e-01, 1.283324957e-01, 2.131117973e-03, 1.152042416e-03, 2.455140702e-06, 2.131117973e-03, 2.455140702e-06],
        [-7.630068064e-01, -9.972607493e-01, -9.843337536e-01, -1.160311885e-02, 2.010870166e-02, -9.843337536e-01, 2.010870166e-02],
        [-9.561731815e-01, -9.795274138e-01, -9.839559197e-01, -1.275507174e-02, 2.011115663e-02, -9.839559197e-01, 2.011115663e-02],
        [5.819847584e-01, -7.055332065e-01, -9.778450131e-01, -8.672763705e-01, 4.908308387e-02, -9.778450131e-01, 4.908308387e-02],
        [-5.752416849e-01, 2.735995874e-02, 2.703665793e-01, 2.015371472e-01, 3.162725568e-01, 2.703665793e-01, 3.162725568e-01],
    ]

    /// factor 8, low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings 8192.
    static let llama3Frequencies: [Double] = [1.000000000e+00, 1.286873817e-01, 3.211446106e-03, 1.371893683e-03, 3.126936499e-04, 9.556212171e-05, 7.784655463e-05, 3.068925878e-07]
    static let llama3Cos: [[Double]] = [
        [1.000000000e+00, 1.000000000e+00, 1.000000000e+00, 1.000000000e+00, 1.000000000e+00, 1.000000000e+00, 1.000000000e+00],
        [5.403023362e-01, 9.917311668e-01, 9.999990463e-01, 9.999999404e-01, 1.000000000e+00, 9.999990463e-01, 1.000000000e+00],
        [-6.463904977e-01, 7.396624982e-02, 2.392627001e-01, -8.362877369e-01, 9.999968410e-01, 2.392627001e-01, 9.999968410e-01],
        [2.928018272e-01, 2.013108432e-01, 2.405949533e-01, -8.364592195e-01, 9.999968410e-01, 2.405949533e-01, 9.999968410e-01],
        [8.131996989e-01, -7.086768150e-01, -6.700946689e-01, 9.995704293e-01, 9.999811649e-01, -6.700946689e-01, 9.999811649e-01],
        [-8.179835081e-01, -9.996256232e-01, -7.352951765e-01, -9.895974994e-01, 9.991911054e-01, -7.352951765e-01, 9.991911054e-01],
    ]
    static let llama3Sin: [[Double]] = [
        [0.000000000e+00, 0.000000000e+00, 0.000000000e+00, 0.000000000e+00, 0.000000000e+00, 0.000000000e+00, 0.000000000e+00],
        [8.414709568e-01, 1.283324957e-01, 1.371893217e-03, 3.126936499e-04, 3.068925878e-07, 1.371893217e-03, 3.068925878e-07],
        [-7.630068064e-01, -9.972607493e-01, -9.709548950e-01, 5.482907891e-01, 2.513754647e-03, -9.709548950e-01, 2.513754647e-03],
        [-9.561731815e-01, -9.795274138e-01, -9.706256390e-01, 5.480291843e-01, 2.514061518e-03, -9.706256390e-01, 2.514061518e-03],
        [5.819847584e-01, -7.055332065e-01, 7.422756553e-01, -2.930823900e-02, 6.137812976e-03, 7.422756553e-01, 6.137812976e-03],
        [-5.752416849e-01, 2.735995874e-02, -6.777470112e-01, -1.438638419e-01, 4.021387175e-02, -6.777470112e-01, 4.021387175e-02],
    ]
}

/// `x·cos + rotate_half(x)·sin` written out in Double, with `rotate_half([x₁, x₂]) = [−x₂, x₁]`;
/// `cos`/`sin` rows are picked per (b, t) by `tableRow`.
private func naiveRotary(_ x: [Double], shape: [Int], cos: [Double], sin: [Double], tableRow: (Int, Int) -> Int) -> [Double] {
    let (b, h, t, dh) = (shape[0], shape[1], shape[2], shape[3])
    let half = dh / 2
    var out = [Double](repeating: 0, count: x.count)
    for bi in 0..<b { for hi in 0..<h { for ti in 0..<t {
        let base = ((bi * h + hi) * t + ti) * dh, row = tableRow(bi, ti) * dh
        for d in 0..<dh {
            let rotated = d < half ? -x[base + d + half] : x[base + d - half]
            out[base + d] = x[base + d] * cos[row + d] + rotated * sin[row + d]
        }
    } } }
    return out
}

@Suite("Rotary position embeddings")
struct RotaryTests {
    @Test("inverse frequencies and cos/sin tables equal transformers' within 1e-6, with and without llama3 scaling")
    func tablesMatchTransformers() {
        let scaling = RotaryScaling(factor: 8, lowFrequencyFactor: 1, highFrequencyFactor: 4, originalMaxPositionEmbeddings: 8192)
        let references = [
            (nil, TorchReference.plainFrequencies, TorchReference.plainCos, TorchReference.plainSin),
            (scaling, TorchReference.llama3Frequencies, TorchReference.llama3Cos, TorchReference.llama3Sin),
        ]
        for (scaling, frequencies, cosines, sines) in references {
            let rope = RotaryEmbedding(headDimension: 128, base: 500_000, scaling: scaling)
            #expect(rope.inverseFrequencies.count == 64)
            for (i, expected) in zip(TorchReference.frequencyIndices, frequencies) {
                // Relative: the frequencies span six decades.
                #expect(abs(rope.inverseFrequencies[i] - expected) <= 1e-6 * expected, "θ[\(i)] scaling \(String(describing: scaling))")
            }
            let (cos, sin) = rope.cosSin(positions: TorchReference.positions)
            #expect(cos.shape == [6, 128] && sin.shape == [6, 128] && cos.dtype == .float32)
            let c = cos.doubles(), s = sin.doubles()
            for (t, _) in TorchReference.positions.enumerated() {
                for (column, d) in TorchReference.columns.enumerated() {
                    #expect(abs(c[t * 128 + d] - cosines[t][column]) <= 1e-6, "cos[\(t), \(d)]")
                    #expect(abs(s[t * 128 + d] - sines[t][column]) <= 1e-6, "sin[\(t), \(d)]")
                }
            }
        }
    }

    @Test("llama3 scaling keeps high frequencies, divides low ones by the factor and blends the band between")
    func llama3Bands() {
        let scaling = RotaryScaling(factor: 8, lowFrequencyFactor: 1, highFrequencyFactor: 4, originalMaxPositionEmbeddings: 8192)
        let plain = RotaryEmbedding(headDimension: 128, base: 500_000)
        let scaled = RotaryEmbedding(headDimension: 128, base: 500_000, scaling: scaling)
        for (p, s) in zip(plain.inverseFrequencies, scaled.inverseFrequencies) {
            let wavelength = 2 * Double.pi / p
            if wavelength < 2048 {
                #expect(s == p)
            } else if wavelength > 8192 {
                #expect(abs(s - p / 8) <= 1e-7 * p)
            } else {
                #expect(s < p && s > p / 8)
            }
        }
    }

    @Test("applying the rotation matches x·cos + rotate_half(x)·sin for shared and per-sample tables and strided input")
    func applyMatchesFormula() {
        let rope = RotaryEmbedding(headDimension: 8, base: 10_000)
        // [B, T, H, Dh] permuted to [B, H, T, Dh], as after a projection.
        let stored = randomFloats([2, 5, 3, 8], seed: 1)
        let x = stored.permuted([0, 2, 1, 3])
        let shared = rope.cosSin(positions: [0, 1, 2, 3, 4])
        let out = applyRotaryEmbedding(x, cos: shared.cos, sin: shared.sin)
        #expect(out.shape == [2, 3, 5, 8] && out.isContiguous)
        let expected = naiveRotary(x.contiguous().doubles(), shape: [2, 3, 5, 8], cos: shared.cos.doubles(), sin: shared.sin.doubles()) { _, t in t }
        #expect(errors(out.doubles(), expected).maxAbs < 1e-6)

        // Left padding: sample 1 starts two positions later.
        let first = rope.cosSin(positions: [0, 1, 2, 3, 4]), second = rope.cosSin(positions: [0, 0, 0, 1, 2])
        let perSampleCos = Tensor(first.cos.floats() + second.cos.floats(), shape: [2, 5, 8])
        let perSampleSin = Tensor(first.sin.floats() + second.sin.floats(), shape: [2, 5, 8])
        let stacked = rope.cosSin(positions: [[0, 1, 2, 3, 4], [0, 0, 0, 1, 2]])
        #expect(stacked.cos.shape == [2, 5, 8] && stacked.cos.floats() == perSampleCos.floats() && stacked.sin.floats() == perSampleSin.floats())
        let perSample = applyRotaryEmbedding(x, cos: perSampleCos, sin: perSampleSin)
        let expectedPerSample = naiveRotary(x.contiguous().doubles(), shape: [2, 3, 5, 8], cos: perSampleCos.doubles(),
                                            sin: perSampleSin.doubles()) { b, t in b * 5 + t }
        #expect(errors(perSample.doubles(), expectedPerSample).maxAbs < 1e-6)
        // Position 0 is the identity.
        #expect(errors(Array(perSample.doubles()[(3 * 5 * 8)..<(3 * 5 * 8 + 8)]), Array(x.contiguous().doubles()[(3 * 5 * 8)..<(3 * 5 * 8 + 8)])).maxAbs < 1e-7)
    }

    @Test("rotary gradients match finite differences (the inverse rotation), for shared and per-sample tables")
    func gradientsMatchFiniteDifferences() {
        let rope = RotaryEmbedding(headDimension: 6, base: 100)
        let (cos, sin) = rope.cosSin(positions: [3, 7, 11, 200], dtype: .float64)
        let x = randomDoubles([2, 4, 3, 6], seed: 2)
        #expect(gradientCheck([x]) { applyRotaryEmbedding($0[0].permuted([0, 2, 1, 3]), cos: cos, sin: sin) } == nil)
        let perSampleCos = randomDoubles([2, 4, 6], seed: 3, requiresGrad: false), perSampleSin = randomDoubles([2, 4, 6], seed: 4, requiresGrad: false)
        #expect(gradientCheck([x]) { applyRotaryEmbedding($0[0].permuted([0, 2, 1, 3]), cos: perSampleCos, sin: perSampleSin) } == nil)
    }
}
