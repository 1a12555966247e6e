"""Pillow peer of `vlm bench images`: decodes the same PNG and JPEG files the same way and prints the
same table and JSON last line, so the two can be compared in one run.

    swift run -c release vlm bench images -i 20
    python Benchmarks/peer_images.py -i 20

Each decode is what VLMKit's `decodeImage` does: open from memory, load, then convert to RGB, or RGBA
for a PNG with alpha or tRNS (JPEGs also get `ImageOps.exif_transpose`, a no-op without EXIF).
"""
import argparse
import io
import json
import time
from pathlib import Path

from PIL import Image, ImageOps


def decode(data: bytes, is_jpeg: bool) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    if is_jpeg:
        im = ImageOps.exif_transpose(im)
        return im if im.mode == "RGB" else im.convert("RGB")
    target = "RGBA" if ("A" in im.mode or "transparency" in im.info) else "RGB"
    return im if im.mode == target else im.convert(target)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*")
    parser.add_argument("-i", "--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    files = args.files or sorted(str(p) for p in Path("../shared/reference/images").glob("*.png")) + [
        "Tests/Fixtures/media/jpeg_coffee_full_q90.jpg"]

    results, total_s, total_dec, total_comp = [], 0.0, 0.0, 0.0
    for path in files:
        data = Path(path).read_bytes()
        is_jpeg = data[:3] == b"\xff\xd8\xff"
        for _ in range(args.warmup):
            decode(data, is_jpeg)
        start = time.perf_counter()
        for _ in range(args.iterations):
            im = decode(data, is_jpeg)
        seconds = time.perf_counter() - start
        w, h = im.size
        dec, comp = w * h * 3 * args.iterations, len(data) * args.iterations
        total_s, total_dec, total_comp = total_s + seconds, total_dec + dec, total_comp + comp
        name = Path(path).name
        print(f"{name:<28} {w:4d}x{h:<4d} {1000 * seconds / args.iterations:6.2f} ms/decode  "
              f"{dec / seconds / 1e6:7.1f} MB/s decoded  {comp / seconds / 1e6:6.1f} MB/s compressed")
        results.append({"file": name, "width": w, "height": h, "ms_per_decode": 1000 * seconds / args.iterations,
                        "decoded_mb_per_s": dec / seconds / 1e6, "compressed_mb_per_s": comp / seconds / 1e6})
    print(json.dumps({"tool": "pillow", "iterations": args.iterations, "files": results,
                      "decoded_mb_per_s": total_dec / total_s / 1e6,
                      "compressed_mb_per_s": total_comp / total_s / 1e6}, sort_keys=True))


if __name__ == "__main__":
    main()
