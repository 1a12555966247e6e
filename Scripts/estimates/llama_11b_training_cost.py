"""What Meta's recipe on the Llama 3.2 11B Vision layout costs per sample: parameter counts, memory,
and forward + backward FLOPs, counted from the published layout (adapters/llama-3.2-11b-vision.yaml
and Llama 3.1 8B's config). Estimates for Docs/training.md, not measurements.

    python3 Scripts/estimates/llama_11b_training_cost.py [GFLOP_PER_S]
"""
import sys

D, F, KV, LAYERS, VOCAB = 4096, 14336, 1024, 32, 128256           # Llama 3.1 8B
CROSS = 8                                                          # cross-attention layers
E, FF, LOCAL, GLOBAL = 1280, 5120, 32, 8                           # ViT-H/14, width 1280
TILES, TILE_TOKENS, TEXT_TOKENS = 4, 1601, 256                     # 4 tiles of 40 x 40 patches + CLS

cross_layer = 2 * D * D + 2 * D * KV + 3 * D * F + 4 * D
vision_layer = 4 * E * E + 2 * E * FF + 10 * E
vision = (LOCAL + GLOBAL) * vision_layer + 3 * 14 * 14 * E + TILE_TOKENS * E + 9 * TILES * TILE_TOKENS * E
projector = 7680 * D + D
trainable = CROSS * cross_layer + vision + projector + 8 * D
frozen = LAYERS * (2 * D * D + 2 * D * KV + 3 * D * F) + 2 * VOCAB * D

image_tokens = TILES * TILE_TOKENS
vision_flops = 2 * vision * image_tokens * 3                       # forward, dX, dW
vision_attention = (LOCAL * TILES * 4 * TILE_TOKENS ** 2 * E + GLOBAL * 4 * image_tokens ** 2 * E) * 3
text_flops = 2 * frozen * TEXT_TOKENS * 2                           # frozen: forward and dX only
cross_flops = 2 * CROSS * (2 * D * D + 3 * D * F) * TEXT_TOKENS * 3 + 2 * CROSS * 2 * D * KV * image_tokens * 3
total = vision_flops + vision_attention + text_flops + cross_flops

rate = float(sys.argv[1]) * 1e9 if len(sys.argv) > 1 else 100e9
print(f"trainable {trainable / 1e9:.2f} B (cross-attention {CROSS * cross_layer / 1e9:.2f}, vision {vision / 1e9:.2f}, "
      f"projector {projector / 1e9:.3f}); frozen {frozen / 1e9:.2f} B")
print(f"frozen weights in bf16 {frozen * 2 / 1e9:.1f} GB; trainable weights + gradients + AdamW moments in fp32 {trainable * 16 / 1e9:.1f} GB")
print(f"TFLOP per sample: vision {vision_flops / 1e12:.1f} + its attention {vision_attention / 1e12:.1f} + frozen text "
      f"{text_flops / 1e12:.1f} + cross-attention {cross_flops / 1e12:.1f} = {total / 1e12:.1f}")
print(f"at {rate / 1e9:.0f} GFLOP/s: {total / rate / 60:.1f} min per sample, "
      f"{total / rate * 16384 / 86400:.0f} days per step of 16,384 samples")
