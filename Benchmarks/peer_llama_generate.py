"""PyTorch peer for `vlm bench text-generation`: greedy decoding with HF transformers' `generate`.

Builds a random Llama of the chosen preset once (seeded), saves it as a Hugging Face checkpoint
directory so that VLMKit loads the very same weights, then measures prefill time and decode
tokens/s of `LlamaForCausalLM.generate` (KV cache, greedy, no early stop) in the checkpoint's
dtype: float32, or bfloat16 with `--dtype bfloat16` (the dtype real Llama 3.1 checkpoints ship in;
the same seeded model, rounded, saved in its own directory).

    python Benchmarks/peer_llama_generate.py --model DIR [--threads 2]
    python Benchmarks/peer_llama_generate.py --model DIR-bf16 --dtype bfloat16

DIR is created on the first run; `vlm bench text-generation --model DIR` then times VLMKit on it.

Prints human-readable lines and, last, one JSON object with prefill_ms, decode_tokens_per_s,
peak_rss_mb.
"""
import argparse
import json
import pathlib
import resource
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

PRESETS = {
    # ~190M parameters, 0.75 GB of float32 weights: decoding streams them once per token.
    "small": dict(vocab_size=32000, hidden_size=1024, intermediate_size=4096, num_hidden_layers=8,
                  num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=4096,
                  rope_theta=500000.0, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
                  rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                    original_max_position_embeddings=1024)),
}


def ensure_checkpoint(directory: pathlib.Path, preset: str, dtype: torch.dtype) -> LlamaForCausalLM:
    if (directory / "model.safetensors").exists():
        return LlamaForCausalLM.from_pretrained(directory, torch_dtype=dtype).eval()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**PRESETS[preset])).eval().to(dtype)
    model.save_pretrained(directory, safe_serialization=True)
    return model


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="checkpoint directory (made on the first run)")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = ensure_checkpoint(pathlib.Path(args.model), args.preset, getattr(torch, args.dtype))
    generator = torch.Generator().manual_seed(1)
    prompt = torch.randint(3, model.config.vocab_size, (1, args.prompt_tokens), generator=generator)
    mask = torch.ones_like(prompt)

    prefill, decode = [], []
    with torch.no_grad():
        model(prompt)  # warm-up
        for _ in range(args.rounds):
            start = time.perf_counter()
            model(prompt, attention_mask=mask, use_cache=True)
            prefill.append(time.perf_counter() - start)
            start = time.perf_counter()
            out = model.generate(prompt, attention_mask=mask, max_new_tokens=args.new_tokens,
                                 min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0)
            total = time.perf_counter() - start
            decode.append((args.new_tokens - 1) / max(total - prefill[-1], 1e-9))
    prefill_ms = sorted(prefill)[len(prefill) // 2] * 1e3
    tokens_per_s = sorted(decode)[len(decode) // 2]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torch {torch.__version__}, {args.threads} threads, preset {args.preset}, {args.dtype}")
    print(f"prefill {args.prompt_tokens} tokens: {prefill_ms:.1f} ms; decode: {tokens_per_s:.1f} tokens/s; peak RSS {peak:.0f} MB")
    print(json.dumps({"prefill_ms": round(prefill_ms, 2), "decode_tokens_per_s": round(tokens_per_s, 2),
                      "peak_rss_mb": round(peak, 1), "generated": out.shape[1] - args.prompt_tokens}))


if __name__ == "__main__":
    main()
