import TensorCore

// LoRA (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language Models") as PEFT implements
// it: a frozen linear layer `W` gains a trainable low-rank update, y = W x + b + (α/r)·B(A·drop(x)).
// The update hangs off the existing `Linear` (``Linear/adapter``), so the base layer keeps its keys
// and no model class changes: attaching, training, merging and saving work on any model.
//
// Shapes: I input width, O output width, r rank.

/// Where LoRA goes and how it is shaped: PEFT's `LoraConfig` fields.
public struct LoRAConfiguration: Codable, Sendable, Equatable {
    /// The rank r of the update (`r`).
    public var rank: Int
    /// α (`lora_alpha`): the update is scaled by α/r.
    public var alpha: Double
    /// Dropout on the update's input while training (`lora_dropout`).
    public var dropout: Double
    /// The linear layers that get an update, by the last component of their names
    /// (`target_modules`; PEFT's Llama names: `q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`,
    /// `up_proj`, `down_proj`).
    public var targetModules: [String]

    /// PEFT's defaults (r 8, α 8, no dropout) on the attention projections.
    public init(rank: Int = 8, alpha: Double = 8, dropout: Double = 0,
                targetModules: [String] = ["q_proj", "k_proj", "v_proj", "o_proj"]) {
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout
        self.targetModules = targetModules
    }

    /// α/r, the factor on B·A.
    public var scale: Double { alpha / Double(rank) }

    enum CodingKeys: String, CodingKey {
        case rank = "r", alpha = "lora_alpha", dropout = "lora_dropout", targetModules = "target_modules"
    }

    /// Values no type can check, each with its recipe key.
    public var problems: [(field: String, reason: String)] {
        var problems: [(String, String)] = []
        if rank < 1 { problems.append(("lora_r", "must be at least 1, got \(rank)")) }
        if !(alpha > 0 && alpha.isFinite) { problems.append(("lora_alpha", "must be positive, got \(alpha)")) }
        if !(0..<1).contains(dropout) { problems.append(("lora_dropout", "must be in [0, 1), got \(dropout)")) }
        if targetModules.isEmpty { problems.append(("lora_target_modules", "name at least one module, e.g. [q_proj, v_proj]")) }
        return problems
    }
}

/// LoRA's update of one linear layer: `(α/r)·B(A·drop(x))`, PEFT's `lora_A` / `lora_B`.
///
/// A fresh update is zero (B starts at 0), so attaching it changes nothing until it trains.
public final class LowRankAdapter: Module {
    override public class var checkpointKeys: [String: String] { ["down": "lora_A", "up": "lora_B"] }

    /// `lora_A`: `[r, I]`, Kaiming-uniform as PEFT draws it (a = √5: uniform in ±1/√I).
    public let down: Linear
    /// `lora_B`: `[O, r]`, zeros when fresh.
    public let up: Linear
    public let alpha: Double
    public let dropout: Double
    /// The dropout masks' source; training restarts it before each micro-batch
    /// (``Module/restartLowRankDropout(seed:)``), so that masks never depend on what ran before.
    private var generator: RandomGenerator

    /// A fresh update for a `[outFeatures, inFeatures]` layer.
    public init(inFeatures: Int, outFeatures: Int, rank: Int, alpha: Double, dropout: Double = 0,
                generator: inout RandomGenerator) {
        let bound = 1 / Double(inFeatures).squareRoot()
        down = Linear(weight: Tensor.randomUniform([rank, inFeatures], in: -bound...bound, using: &generator))
        up = Linear(weight: Tensor(zeros: [outFeatures, rank]))
        self.alpha = alpha
        self.dropout = dropout
        self.generator = RandomGenerator(seed: generator.next())
        super.init()
    }

    /// An update with given `lora_A` `[r, I]` and `lora_B` `[O, r]` (loaded from an adapter file).
    public init(down: Tensor, up: Tensor, alpha: Double, dropout: Double = 0, seed: UInt64 = 0) {
        ensure(down.rank == 2 && up.rank == 2 && up.shape[1] == down.shape[0],
               "LoRA: lora_A must be [r, in] and lora_B [out, r], got \(down.shape) and \(up.shape)")
        self.down = Linear(weight: down)
        self.up = Linear(weight: up)
        self.alpha = alpha
        self.dropout = dropout
        generator = RandomGenerator(seed: seed)
        super.init()
    }

    /// Draws the dropout masks from here on from `seed`.
    public func restartDropout(seed: UInt64) {
        generator = RandomGenerator(seed: seed)
    }

    public var rank: Int { down.outFeatures }
    /// α/r.
    public var scale: Double { alpha / Double(rank) }

    /// `[..., I] → [..., O]`. Saves nothing itself; the two products and the scaling record their
    /// own backward (dA = s·(Bᵀg)ᵀx, dB = s·gᵀ(Ax), dx = s·AᵀBᵀg).
    public func callAsFunction(_ x: Tensor, training: Bool) -> Tensor {
        let input = dropout > 0 ? x.dropout(probability: dropout, training: training, generator: &generator) : x
        return up(down(input)) * scale                                                      // (..., r) → (..., O)
    }

    /// `s·B·A`, `[O, I]`, in the update's dtype.
    public func delta() -> Tensor {
        withNoGrad { up.weight.matmul(down.weight) * scale }
    }
}

extension Linear {
    /// The weight with the adapter folded in, `W + s·B·A` (float32, or float64 for a float64
    /// weight; a 16-bit weight is widened); the weight itself without an adapter.
    public var mergedWeight: Tensor {
        guard let adapter else { return weight }
        return withNoGrad {
            let base = weight.dtype == .float64 ? weight : weight.converted(to: .float32)
            let delta = adapter.delta()
            return base + (delta.dtype == base.dtype ? delta : delta.converted(to: base.dtype))
        }
    }

    /// Folds the adapter into the weight (``mergedWeight``, frozen) and removes it: the layer then
    /// computes what it computed with the adapter, up to rounding.
    public func mergeAdapter() {
        guard adapter != nil else { return }
        weight = mergedWeight.detached()
        adapter = nil
    }
}

extension Module {
    /// Every `Linear` in this module and below with its dotted name (an adapter's own layers are
    /// not listed), in declaration order.
    public func namedLinearLayers(prefix: String = "") -> [(name: String, layer: Linear)] {
        if let linear = self as? Linear { return [(String(prefix.dropLast()), linear)] }
        return namedChildren().flatMap { key, child in child.namedLinearLayers(prefix: prefix + key + ".") }
    }

    /// Attaches a fresh adapter to each linear layer whose name ends in one of the configuration's
    /// target modules (PEFT's rule: the name is the target or ends in `.target`) and that
    /// `include` accepts. Adapters are drawn in declaration order from `seed`, so the same model,
    /// configuration and seed give the same adapters.
    /// - Returns: the names of the layers adapted.
    @discardableResult
    public func attachLowRankAdapters(_ configuration: LoRAConfiguration, seed: UInt64,
                                      where include: (String) -> Bool = { _ in true }) -> [String] {
        var generator = RandomGenerator(seed: seed)
        var adapted: [String] = []
        for (name, layer) in namedLinearLayers() {
            let last = name.split(separator: ".").last.map(String.init) ?? name
            guard configuration.targetModules.contains(last), include(name) else { continue }
            ensure(layer.adapter == nil, "'\(name)' already has a LoRA adapter")
            let adapter = LowRankAdapter(inFeatures: layer.inFeatures, outFeatures: layer.outFeatures, rank: configuration.rank,
                                         alpha: configuration.alpha, dropout: configuration.dropout, generator: &generator)
            if layer.weight.dtype == .float64 {
                for (_, slot) in adapter.namedParameters() { slot.tensor = slot.tensor!.converted(to: .float64) }
            }
            layer.adapter = adapter
            adapted.append(name)
        }
        return adapted
    }

    /// The layers that carry an adapter, with their names.
    public func lowRankAdaptedLayers() -> [(name: String, layer: Linear)] {
        namedLinearLayers().filter { $0.layer.adapter != nil }
    }

    /// Restarts the dropout masks of every adapter below this module, each adapter from its own
    /// stream drawn from `seed` in declaration order. Training calls it before each micro-batch
    /// with a seed fixed by the stage's seed, the step and the micro-batch's place in the step, so
    /// a resumed stage and a data-parallel one draw the masks of one uninterrupted process.
    public func restartLowRankDropout(seed: UInt64) {
        var streams = RandomGenerator(seed: seed)
        for (_, layer) in lowRankAdaptedLayers() { layer.adapter?.restartDropout(seed: streams.next()) }
    }

    /// Folds every adapter into its layer's weight (``Linear/mergeAdapter()``).
    public func mergeLowRankAdapters() {
        for (_, layer) in lowRankAdaptedLayers() { layer.mergeAdapter() }
    }

    /// Every parameter as ``parameters()`` lists it, but with adapters folded into their layers'
    /// weights and the adapters' own tensors left out: what a plain checkpoint of this model holds.
    /// The model is not changed.
    public func parametersWithAdaptersMerged() -> [(name: String, tensor: Tensor)] {
        let adapted = Dictionary(uniqueKeysWithValues: lowRankAdaptedLayers().map {
            ($0.name.isEmpty ? "weight" : $0.name + ".weight", $0.layer)
        })
        guard !adapted.isEmpty else { return parameters() }
        return parameters().compactMap { name, tensor in
            let isAdapter = ["lora_A.weight", "lora_B.weight"].contains { name == $0 || name.hasSuffix("." + $0) }
            if isAdapter { return nil }
            return (name, adapted[name]?.mergedWeight ?? tensor)
        }
    }
}
