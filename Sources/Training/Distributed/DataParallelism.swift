import Collectives
import Dispatch
import Foundation
import Layers
import TensorCore

/// How a stage trains over several processes (ranks): data-parallel, every rank holding the whole
/// model and applying the same update.
///
/// **The split.** A step's global batch is what the recipe says — `gradient_accumulation`
/// micro-batches of `micro_batch_size` samples — whatever the number of ranks. Every rank draws the
/// same micro-batches from the seed's order (so the data position, the checkpoint and the order do not
/// depend on the number of ranks), and rank `r` of `N` runs micro-batches `r`, `r + N`, `r + 2N`, …
/// of each step. Each rank's losses are divided by the learned tokens of the *whole* step (every rank
/// knows them: it has every micro-batch), so the sum over ranks of the gradients is exactly the
/// gradient one process computes with accumulation, up to the order of float additions.
///
/// **The reduction.** After its micro-batches, a rank sums the trainable parameters' gradients with
/// the others (an all-reduce, ``ProcessGroup``) in buckets of ``bucketBytes``; frozen
/// parameters have no gradient and are never sent. The loss is summed the same way, so a non-finite
/// loss on any rank makes every rank skip the step. Clipping then sees the global gradient norm.
///
/// **Stages that generate** (rejection sampling, on-policy DPO) split their batches of prompts
/// across the ranks (batch `i`'s seed depends only on `i`) and gather the sampled candidates on
/// every rank in batch order (``CandidateSampler``), so every rank trains on the set one process
/// would have kept, and rank 0 writes it.
public struct DataParallelism {
    public let group: any ProcessGroup
    /// The largest message of one gradient sum.
    public var bucketBytes: Int
    /// Called on every rank after each run checkpoint, once every rank's trainable weights and
    /// optimiser state were found identical: the stage, the step and their hash.
    public var onReplicasVerified: (_ stage: String, _ step: Int, _ hash: String) -> Void

    public init(group: any ProcessGroup, bucketBytes: Int = 16 << 20,
                onReplicasVerified: @escaping (String, Int, String) -> Void = { _, _, _ in }) {
        self.group = group
        self.bucketBytes = bucketBytes
        self.onReplicasVerified = onReplicasVerified
    }

    /// Whether this rank writes the run's files (checkpoints, metrics, outputs, the run record).
    public var isWriter: Bool { group.rank == 0 }

    /// Whether this rank runs micro-batch `index` of a step.
    public func runs(microBatch index: Int) -> Bool { index % group.size == group.rank }

    /// Sums the step's loss and the gradients of `parameters` over all ranks, in place.
    func combine(_ report: inout StepReport, parameters: [(name: String, tensor: Tensor)]) throws {
        var start = DispatchTime.now().uptimeNanoseconds
        // Apart, so that the communication time is the sums' own and not the slowest rank's lateness.
        try group.barrier()
        report.rankWaitSeconds = TrainingStepper.seconds(since: &start)
        // The loss, and which parameters got a gradient anywhere (a parameter that got none on any
        // rank must stay without one, as in one process, so AdamW leaves it alone).
        let small = try group.sum([report.loss] + parameters.map { $0.tensor.grad == nil ? 0 : 1 })
        report.loss = small[0]
        report.isFinite = report.loss.isFinite
        var summed: [Tensor] = []
        for (index, parameter) in parameters.enumerated() where small[index + 1] > 0 {
            // A new buffer: a gradient may be a view shared with another tensor.
            let gradient = parameter.tensor.grad?.contiguous().copy() ?? Tensor(zeros: parameter.tensor.shape, dtype: parameter.tensor.dtype)
            parameter.tensor.grad = gradient
            summed.append(gradient)
        }
        try GradientBuckets(bucketBytes: bucketBytes).allReduceSum(summed, group: group)
        report.communicationSeconds = TrainingStepper.seconds(since: &start)
    }
}

extension TrainingStepper {
    /// One data-parallel step: this rank runs its share of `microBatches` (all ranks pass the same
    /// ones), the loss and gradients are summed over the ranks, and every rank applies the same update.
    ///
    /// - Throws: ``CollectiveError`` when another rank stopped or the network failed.
    public func step(_ microBatches: [TrainingBatch], learningRate: Double, across parallelism: DataParallelism) throws -> StepReport {
        try step(microBatches, learningRate: learningRate, runs: parallelism.runs(microBatch:),
                 combine: { try parallelism.combine(&$0, parameters: optimizer.parameters) })
    }
}

extension DataParallelism {
    /// Checks that every rank holds the same trainable weights and optimiser state, and the same
    /// stage state (an EMA reference's weights), bit for bit.
    ///
    /// - Throws: ``DataParallelMismatch`` (on every rank) naming the ranks that differ from rank 0.
    func verifyReplicas(stage: String, step: Int, optimizer: AdamW, stageState: [String: Tensor] = [:]) throws {
        var hash = ContentHash()
        for parameter in optimizer.parameters {
            hash.add(parameter.name)
            hash.add(parameter.tensor)
        }
        for (name, tensor) in optimizer.stateTensors().sorted(by: { $0.key < $1.key }) {
            hash.add(name)
            hash.add(tensor)
        }
        for (name, count) in optimizer.stepCounts.sorted(by: { $0.key < $1.key }) { hash.add("\(name)=\(count)") }
        for (name, tensor) in stageState.sorted(by: { $0.key < $1.key }) {
            hash.add("stage state " + name)
            hash.add(tensor)
        }
        let hashes = try group.allGather(hash.hex)
        let differing = hashes.indices.filter { hashes[$0] != hashes[0] }
        guard differing.isEmpty else {
            throw DataParallelMismatch("\(stage) step \(step): the trainable weights and optimiser state of "
                + differing.map { "rank \($0) (\(hashes[$0]))" }.joined(separator: ", ")
                + " differ from rank 0's (\(hashes[0])); stopping. The last whole checkpoint is kept.")
        }
        onReplicasVerified(stage, step, hash.hex)
    }

    /// The step's compute time, the wait for the slowest rank and the communication time, for `metrics.jsonl`.
    func timing(of report: StepReport) -> [String: MetricValue] {
        ["compute_s": .number(report.forwardSeconds + report.backwardSeconds + report.optimizerSeconds),
         "rank_wait_s": .number(report.rankWaitSeconds), "communication_s": .number(report.communicationSeconds),
         "ranks": .integer(group.size)]
    }
}

/// The ranks of a data-parallel job disagree (recipe, model, data, or weights). Every rank throws it
/// at the same point, from the same gathered facts, so the job can stop without an abort.
public struct DataParallelMismatch: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
