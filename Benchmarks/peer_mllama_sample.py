#!/usr/bin/env python3
"""Peer of `vlm bench sample`: transformers' `generate(num_return_sequences=K)` sampling K answers for
each of U prompts with the 'small' Mllama preset of ../shared/bench/peer_mllama_train.py on CPU (one
image of 4 tiles per prompt, temperature 1, top-p 0.95, exactly N new tokens per row). Prints the
generated tokens/s (U·K·N / wall time, prefill included), median of the rounds, then a JSON line.

    python3 Benchmarks/peer_mllama_sample.py --prompts 2 --samples 4 --new 32 --rounds 3

Run it from the repository root with ../shared beside the clone (or PEER_DIR=path/to/bench).
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
from transformers import MllamaConfig, MllamaForConditionalGeneration

sys.path.insert(0, os.environ.get("PEER_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "bench")))
from peer_mllama_train import PRESETS  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--prompts", type=int, default=2)
parser.add_argument("--samples", type=int, default=4)
parser.add_argument("--tokens", type=int, default=64)
parser.add_argument("--new", type=int, default=32)
parser.add_argument("--rounds", type=int, default=3)
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)
preset = PRESETS["small"]
vocabulary = preset["text"]["vocab_size"]
config = MllamaConfig(vision_config=preset["vision"], text_config=preset["text"], image_token_index=vocabulary - 1)
model = MllamaForConditionalGeneration(config).eval()
u, t, side = args.prompts, args.tokens, preset["vision"]["image_size"]
ids = torch.randint(3, vocabulary - 2, (u, t))
ids[:, 1] = vocabulary - 1
inputs = dict(pixel_values=torch.randn(u, 1, 4, 3, side, side), aspect_ratio_ids=torch.full((u, 1), 6),
              aspect_ratio_mask=torch.ones(u, 1, 4, dtype=torch.long), cross_attention_mask=torch.ones(u, t, 1, 4, dtype=torch.long))
inputs["cross_attention_mask"][:, :1] = 0
rates = []
with torch.no_grad():
    for round_ in range(args.rounds + 1):
        new = 2 if round_ == 0 else args.new
        start = time.perf_counter()
        out = model.generate(input_ids=ids, do_sample=True, temperature=1.0, top_p=0.95, top_k=0, num_return_sequences=args.samples,
                             max_new_tokens=new, min_new_tokens=new, **inputs)
        seconds = time.perf_counter() - start
        assert out.shape == (u * args.samples, t + new), out.shape
        if round_ > 0:
            rates.append(u * args.samples * new / seconds)
median = statistics.median(rates)
print(f"sampling: {median:.1f} generated tokens/s ({u * args.samples} rows, median of {args.rounds})")
print(json.dumps({"sample_tokens_per_s": median}))
