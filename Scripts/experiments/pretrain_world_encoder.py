"""Pretrain an Mllama checkpoint's image encoder on the built-in world's scene records (a diagnosis).

Meta's image encoder was pretrained before Llama 3.2 Vision's adapters were trained; the main job's
starts from random weights. This script trains the vision model of a `vlm adapters init` checkpoint
alone, with transformers, to name on every patch the shape, colour, size, row and column of the
object covering the patch's centre (linear heads on the encoder's output, dropped afterwards), and
writes the whole checkpoint, everything else unchanged, for `vlm train` to start from
(Docs/training.md, "Without a language model: where the wall is").

    vlm data synth --out w64 --scenes 20000 --heldout 1000
    python3 Scripts/experiments/pretrain_world_encoder.py --base runs/default/vision-init --world w64 --out vision-pretrained

Needs torch, transformers, numpy and pillow; not used by the tests.
"""
import argparse, json, shutil

import numpy as np
import torch
from PIL import Image

SHAPES = ["circle", "square", "triangle", "diamond", "cross"]
SIZES = ["small", "large"]


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="an mllama checkpoint folder (vlm adapters init)")
    parser.add_argument("--world", required=True, help="a folder written by vlm data synth, at the checkpoint's image size")
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def patch_labels(world, patch):
    """Training images and, per patch, the covering object's shape, colour, size, row and column
    indices (0 = background); also the number of colours and of patches. world_selection_toy.py uses it too."""
    record = json.load(open(f"{world}/world.json"))
    colors, side = list(record["colors"]), record["image_size"] // patch
    images, labels = [], []
    for scene in record["scenes"]:
        if scene["split"] != "train":
            continue
        label = torch.zeros(side * side, 5, dtype=torch.long)
        for item in scene["objects"]:
            x0, y0, x1, y1 = item["box"]
            for py in range(side):
                for px in range(side):
                    cx, cy = (px + 0.5) * patch, (py + 0.5) * patch
                    if x0 <= cx < x1 and y0 <= cy < y1:
                        label[py * side + px] = torch.tensor([
                            SHAPES.index(item["shape"]) + 1, colors.index(item["color"]) + 1,
                            SIZES.index(item["size"]) + 1, item["row"] + 1, item["column"] + 1])
        array = np.array(Image.open(f"{world}/{scene['image']}").convert("RGB"))
        images.append(torch.from_numpy(array).permute(2, 0, 1))
        labels.append(label)
    return torch.stack(images), torch.stack(labels), len(colors), side * side


def main():
    from transformers import MllamaForConditionalGeneration

    args = arguments()
    torch.manual_seed(args.seed)
    model = MllamaForConditionalGeneration.from_pretrained(args.base, dtype=torch.float32)
    vision = model.model.vision_model
    processor = json.load(open(f"{args.base}/preprocessor_config.json"))
    mean = torch.tensor(processor["image_mean"]).view(3, 1, 1)
    std = torch.tensor(processor["image_std"]).view(3, 1, 1)
    images, labels, colors, patches = patch_labels(args.world, vision.patch_size)
    width = vision.config.vision_output_dim
    heads = torch.nn.ModuleList(torch.nn.Linear(width, classes) for classes in [6, colors + 1, 3, 4, 4])

    def encode(pixels):
        """The encoder's output tokens for one 1-tile image each, class token dropped."""
        values = ((pixels.float() / 255 - mean) / std)[:, None, None]
        ones = torch.ones(len(pixels), 1, dtype=torch.long)
        hidden = vision(pixel_values=values, aspect_ratio_ids=ones, aspect_ratio_mask=ones[..., None])[0]
        return hidden.reshape(len(pixels), -1, width)[:, 1:1 + patches]

    optimizer = torch.optim.AdamW(list(vision.parameters()) + list(heads.parameters()), lr=args.learning_rate, weight_decay=0)
    generator = torch.Generator().manual_seed(args.seed)
    check = slice(len(images) - 300, len(images))   # the last 300 training scenes, only to report
    for step in range(1, args.steps + 1):
        batch = torch.randint(0, len(images), (args.batch,), generator=generator)
        hidden = encode(images[batch])
        loss = sum(torch.nn.functional.cross_entropy(head(hidden).flatten(0, 1), labels[batch][..., k].flatten())
                   for k, head in enumerate(heads))
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        if step % 500 == 0 or step == args.steps:
            with torch.no_grad():
                hidden, target = encode(images[check]), labels[check]
                on_object = target[..., 0] > 0
                accuracy = [((head(hidden).argmax(-1) == target[..., k]) & on_object).sum().item() / on_object.sum().item()
                            for k, head in enumerate(heads)]
            print(f"step {step}: loss {loss.item():.3f}, on object patches " + ", ".join(
                f"{name} {100 * value:.1f} %" for name, value in zip(["shape", "colour", "size", "row", "column"], accuracy)), flush=True)
    shutil.copytree(args.base, args.out, dirs_exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
