import Foundation
import Testing
import TensorCore
import _TestSupport
@testable import Checkpoint

@Suite("Sharded checkpoints")
struct ShardedCheckpointTests {
    @Test("A Python-written two-shard checkpoint reads as one name → tensor lookup, by folder or by index")
    func pythonShards() throws {
        let whole = try SafetensorsFile(url: Fixtures.url("checkpoint/tiny_tree.safetensors"))
        for path in ["checkpoint/sharded", "checkpoint/sharded/model.safetensors.index.json"] {
            let checkpoint = try SafetensorsCheckpoint(url: Fixtures.url(path))
            #expect(checkpoint.names == whole.names.sorted())
            #expect(checkpoint.shards.count == 2)
            for name in whole.names { #expect(rawBytes(try checkpoint.tensor(name)) == rawBytes(try whole.tensor(name))) }
            #expect(try checkpoint.info("language_model.lm_head.weight").file.hasSuffix("model-00002-of-00002.safetensors"))
        }
    }

    @Test("An index naming a missing shard is an error naming the index, the shard and a tensor")
    func missingShard() {
        let message = thrownDescription { _ = try SafetensorsCheckpoint(url: Fixtures.url("checkpoint/sharded/broken.safetensors.index.json")) }
        #expect(message?.contains("broken.safetensors.index.json") == true)
        #expect(message?.contains("model-00003-of-00003.safetensors") == true)
        #expect(message?.contains("language_model.lm_head.weight") == true)
    }

    @Test("An index listing a tensor its shard lacks, and a lookup of an absent name, are errors naming the tensor")
    func missingTensor() throws {
        let folder = try TemporaryFolder()
        try writeSafetensors(tensors: [("a", Tensor([1] as [Float], shape: [1]))], to: folder.file("s.safetensors"))
        try AtomicFile.write(Data(#"{"weight_map": {"a": "s.safetensors", "b": "s.safetensors"}}"#.utf8),
                             to: folder.file("model.safetensors.index.json"))
        let message = thrownDescription { _ = try SafetensorsCheckpoint(url: folder.url) }
        #expect(message?.contains("'b'") == true && message?.contains("s.safetensors") == true)

        let single = try SafetensorsCheckpoint(url: folder.file("s.safetensors"))
        #expect(thrownDescription { _ = try single.tensor("zzz") }?.contains("'zzz'") == true)
    }

    @Test("The sharded writer splits by size, writes an index, and reads back")
    func writeShards() throws {
        let folder = try TemporaryFolder()
        let tensors = (0..<5).map { ("layers.\($0).weight", Tensor((0..<100).map { Float($0 * 3) }, shape: [10, 10])) }
        let written = try writeShardedSafetensors(tensors: tensors, to: folder.url, maxShardBytes: 900)
        #expect(written.map(\.lastPathComponent) == [
            "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
            "model-00003-of-00003.safetensors", "model.safetensors.index.json"])
        let checkpoint = try SafetensorsCheckpoint(url: folder.url)
        #expect(checkpoint.indexPath != nil)
        #expect(checkpoint.names == tensors.map(\.0))
        for (name, t) in tensors { #expect(try checkpoint.tensor(name).floats() == t.floats()) }
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: folder.file("model.safetensors.index.json"))) as! [String: Any]
        #expect((index["metadata"] as! [String: Int])["total_size"] == 2000)

        let small = try TemporaryFolder()
        #expect(try writeShardedSafetensors(tensors: tensors, to: small.url, maxShardBytes: 1 << 20).map(\.lastPathComponent)
                == ["model.safetensors"])
    }

    @Test("A folder of unindexed shards is read in name order, and a name in two shards is an error")
    func unindexedFolder() throws {
        let folder = try TemporaryFolder()
        try writeSafetensors(tensors: [("a", Tensor([1] as [Float], shape: [1]))], to: folder.file("part1.safetensors"))
        try writeSafetensors(tensors: [("b", Tensor([2] as [Float], shape: [1]))], to: folder.file("part2.safetensors.zst"))
        let checkpoint = try SafetensorsCheckpoint(url: folder.url)
        #expect(checkpoint.names == ["a", "b"])
        #expect(try checkpoint.tensor("b").floats() == [2])
        try writeSafetensors(tensors: [("a", Tensor([3] as [Float], shape: [1]))], to: folder.file("part3.safetensors"))
        let message = thrownDescription { _ = try SafetensorsCheckpoint(url: folder.url) }
        #expect(message?.contains("'a' appears in both") == true)
    }
}
