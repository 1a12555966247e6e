#!/usr/bin/env python3
"""Peer of `vlm bench dpo`: TRL's `DPOTrainer` training a small Llama 3.2 Vision (the 'small' Mllama preset of
../shared/bench/peer_mllama_train.py) on CPU, one step timed from the trainer's `on_step_begin` to its `on_step_end`
callback: `DPOTrainer.training_step` (the policy's forward on chosen and rejected rows concatenated, the reference's
forward under `torch.no_grad`, the sigmoid loss, backward), gradient clipping at 1, `AdamW.step`, the scheduler,
`zero_grad` — TRL's own training loop (`trainer.train()`), nothing reimplemented. Fetching and collating the batch
happen before `on_step_begin` and are not timed (VLMKit's bench times no data loading either).

Same work as `vlm bench dpo`: P pairs, each a prompt of --prompt-tokens tokens (<|image|> second, one image of 4
tiles) with chosen and rejected responses of --response-tokens tokens; 2P rows laid out [chosen; rejected] with every
row carrying its pair's image, as TRL's `DataCollatorForVisionPreference` lays them out (images repeated for chosen
and rejected, `completion_mask` on the response). The data collator returns that fixed, prebuilt batch (the same
seeded-random ids and pixels every step) instead of tokenizing text, because the preset's 8192-token vocabulary has no
real tokenizer. Trainable: the vision encoder, projector and cross-attention layers (text self-attention, embeddings
and lm_head frozen). beta 0.1, loss_type sigmoid, precompute_ref_log_probs off (the reference, a frozen copy of the
initial policy, runs on every batch, as VLMKit's does), AdamW lr 1e-4 (constant) and weight decay 0.01, float32
(bf16 off: DPOConfig turns it on by default) and gradient checkpointing off (DPOConfig's default is on; VLMKit's
step does not recompute activations either). One warm-up step, then --steps timed; the median is reported.

The first step's loss is ln 2 on both sides whatever the weights (the policy equals the reference), so both sides
are checked to compute the same loss; the weights themselves differ (torch's initialisation vs VLMKit's seeded one).

    python3 Benchmarks/peer_dpo_step.py --pairs 4 --prompt-tokens 64 --response-tokens 64 --steps 5

Run it from the repository root with ../shared beside the clone (or PEER_DIR=path/to/bench). The last line is JSON.
"""
import argparse
import copy
import json
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import warnings

import torch
from datasets import Dataset
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import (MllamaConfig, MllamaForConditionalGeneration, MllamaImageProcessorPil, MllamaProcessor,
                          PreTrainedTokenizerFast, PrinterCallback, TrainerCallback)
from trl import DPOConfig, DPOTrainer

sys.path.insert(0, os.environ.get("PEER_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "bench")))
from peer_mllama_train import PRESETS  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--pairs", type=int, default=4)
parser.add_argument("--prompt-tokens", type=int, default=64)
parser.add_argument("--response-tokens", type=int, default=64)
parser.add_argument("--steps", type=int, default=5)
args = parser.parse_args()
if args.pairs < 1 or args.prompt_tokens < 2 or args.response_tokens < 1 or args.steps < 1:
    parser.error("--pairs, --response-tokens and --steps must be positive, --prompt-tokens at least 2")
torch.set_num_threads(args.threads)
torch.manual_seed(0)
warnings.filterwarnings("ignore")

preset = PRESETS["small"]
vocabulary = preset["text"]["vocab_size"]
image_token = vocabulary - 1
config = MllamaConfig(vision_config=preset["vision"], text_config=preset["text"], image_token_index=image_token)
model = MllamaForConditionalGeneration(config)
cross_layers = set(preset["text"]["cross_attention_layers"])
for name, parameter in model.named_parameters():   # peer_mllama_train.py's trainable set
    parameter.requires_grad = True
    if name.startswith("model.language_model"):
        parts = name.split(".")
        parameter.requires_grad = "layers" in parts and int(parts[parts.index("layers") + 1]) in cross_layers
    if name.startswith("lm_head"):
        parameter.requires_grad = False
reference = copy.deepcopy(model).eval()
for parameter in reference.parameters():
    parameter.requires_grad = False

# The batch DataCollatorForVisionPreference would build: rows [chosen; rejected], prompts left, responses right.
P, Tp, Tr, side, tiles = args.pairs, args.prompt_tokens, args.response_tokens, preset["vision"]["image_size"], preset["tiles"]
T = Tp + Tr
prompt = torch.randint(3, vocabulary - 2, (P, Tp))
prompt[:, 1] = image_token
chosen, rejected = torch.randint(3, vocabulary - 2, (P, Tr)), torch.randint(3, vocabulary - 2, (P, Tr))
pixels = torch.randn(P, 1, tiles, 3, side, side)
cross_mask = torch.ones(P, T, 1, tiles, dtype=torch.long)
cross_mask[:, :1] = 0
twice = lambda x: torch.cat([x, x], dim=0)
batch = dict(
    input_ids=torch.cat([torch.cat([prompt, chosen], dim=1), torch.cat([prompt, rejected], dim=1)], dim=0),
    attention_mask=torch.ones(2 * P, T, dtype=torch.long),
    completion_mask=torch.cat([torch.zeros(2 * P, Tp, dtype=torch.long), torch.ones(2 * P, Tr, dtype=torch.long)], dim=1),
    pixel_values=twice(pixels), aspect_ratio_ids=torch.full((2 * P, 1), 6), aspect_ratio_mask=torch.ones(2 * P, 1, tiles, dtype=torch.long),
    cross_attention_mask=twice(cross_mask))

# DPOTrainer wants a processor for a vision model: a word-level tokenizer over the preset's ids (never called).
words = {f"t{i}": i for i in range(vocabulary - 1)} | {"<|image|>": image_token}
tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel(words, unk_token="t3")),
                                    bos_token="t1", eos_token="t2", pad_token="t0", unk_token="t3")
processor = MllamaProcessor(image_processor=MllamaImageProcessorPil(size={"height": side, "width": side}, max_image_tiles=tiles),
                            tokenizer=tokenizer)
rows = P * (args.steps + 1)
records = Dataset.from_dict({"images": [["pair image"]] * rows, "prompt": ["t5"] * rows, "chosen": ["t6"] * rows,
                             "rejected": ["t7"] * rows})


class StepTimer(TrainerCallback):
    """Wall and CPU time from on_step_begin to on_step_end: forward, backward, clipping, AdamW, zero_grad."""
    def __init__(self):
        self.wall, self.cpu = [], []

    def on_step_begin(self, *_, **__):
        self.start = (time.perf_counter(), time.process_time())

    def on_step_end(self, *_, **__):
        self.wall.append(time.perf_counter() - self.start[0])
        self.cpu.append(time.process_time() - self.start[1])


class RecordingDPOTrainer(DPOTrainer):
    """DPOTrainer, keeping each step's loss (one .item(), as VLMKit's step reads its loss) and logged logps/chosen."""
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.losses, self.chosen_logps = [], []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        self.losses.append((loss[0] if return_outputs else loss).item())
        self.chosen_logps.append(self._metrics["train"]["logps/chosen"][-1])
        return loss


timer = StepTimer()
with tempfile.TemporaryDirectory() as output:
    dpo = DPOConfig(output_dir=output, beta=0.1, loss_type=["sigmoid"], precompute_ref_log_probs=False,
                    per_device_train_batch_size=P, max_steps=args.steps + 1, learning_rate=1e-4, lr_scheduler_type="constant",
                    weight_decay=0.01, optim="adamw_torch", max_grad_norm=1.0, bf16=False, gradient_checkpointing=False,
                    use_cpu=True, logging_strategy="no", save_strategy="no", report_to="none", disable_tqdm=True,
                    remove_unused_columns=False, dataloader_num_workers=0, seed=0, max_length=None)
    trainer = RecordingDPOTrainer(model=model, ref_model=reference, args=dpo, train_dataset=records, processing_class=processor,
                                  data_collator=lambda _: {key: value.clone() for key, value in batch.items()}, callbacks=[timer])
    trainer.remove_callback(PrinterCallback)   # keeps the last line JSON
    trainer.train()
    first_logps_chosen = trainer.chosen_logps[0]

assert len(timer.wall) == args.steps + 1, timer.wall
wall, cpu = timer.wall[1:], timer.cpu[1:]   # the first step warms up
seconds = statistics.median(wall)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
cpu_name = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
print(f"TRL DPOTrainer step: pairs={P} rows={2 * P} tokens per row={T} (prompt {Tp}, response {Tr}) threads={args.threads} torch {torch.__version__}")
print(f"first step: loss {trainer.losses[0]:.6f} (ln 2 = {math.log(2):.6f}), chosen log-prob per response token {first_logps_chosen / Tr:.4f}")
print(f"step {seconds * 1e3:.0f} ms (median of {args.steps}; min {min(wall) * 1e3:.0f}, max {max(wall) * 1e3:.0f}), CPU time "
      f"{statistics.median(cpu) * 1e3:.0f} ms  pairs/s {P / seconds:.2f}  tokens/s {2 * P * T / seconds:.0f}  loss {trainer.losses[-1]:.6f}")
print(f"peak RSS {peak:.0f} MB")
print(json.dumps({"step_ms": seconds * 1e3, "cpu_ms": statistics.median(cpu) * 1e3, "pairs_per_s": P / seconds,
                  "tokens_per_s": 2 * P * T / seconds, "peak_rss_mb": peak, "first_loss": trainer.losses[0],
                  "first_logps_chosen_per_token": first_logps_chosen / Tr, "pairs": P, "prompt_tokens": Tp, "response_tokens": Tr,
                  "steps": args.steps, "threads": args.threads, "cpu": cpu_name}))
