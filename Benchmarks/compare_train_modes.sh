#!/usr/bin/env bash
# The training step against PyTorch in all its modes (issue 17), alternating rounds:
# VLMKit float32, VLMKit --precision bf16, PyTorch eager, torch.compile and CPU autocast bf16.
# Usage: Benchmarks/compare_train_modes.sh [ROUNDS] [STEPS]; needs a release `vlm` in .build/release
# and a python with torch + transformers as $PYTHON (default python3). Prints one line per run and
# the medians; OPENBLAS_* variables are used as found.
set -euo pipefail
rounds=${1:-3}
steps=${2:-3}
python=${PYTHON:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
vlm="$root/.build/release/vlm"
peer="$root/../shared/bench/peer_mllama_train.py"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
lscpu | grep -m1 'Model name' || true
# VLMKit's last line is JSON ("tokens_per_s": N); the peer prints "tokens/s=N".
tokens() { grep -oE '"tokens_per_s": *[0-9.]+|tokens/s=[0-9.]+' | tail -1 | grep -oE '[0-9.]+$'; }
for round in $(seq "$rounds"); do
    for mode in vlmkit-float32 vlmkit-bf16 torch-eager torch-compile torch-autocast; do
        case $mode in
        vlmkit-float32) t=$("$vlm" bench train --preset small --steps "$steps" 2>/dev/null | tokens) ;;
        vlmkit-bf16) t=$("$vlm" bench train --preset small --steps "$steps" --precision bf16 2>/dev/null | tokens) ;;
        torch-eager) t=$("$python" "$peer" --steps "$steps" 2>/dev/null | tokens) ;;
        torch-compile) t=$("$python" "$peer" --steps "$steps" --compile 2>/dev/null | tokens) ;;
        torch-autocast) t=$("$python" "$peer" --steps "$steps" --autocast bf16 2>/dev/null | tokens) ;;
        esac
        load=$(cut -d' ' -f1 /proc/loadavg)
        echo "round $round $mode tokens/s $t load $load" | tee -a "$log"
    done
done
"$python" - "$log" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    parts = line.split()
    runs.setdefault(parts[2], []).append(float(parts[4]))
med = {mode: statistics.median(v) for mode, v in runs.items()}
for mode, v in runs.items():
    print(f"{mode:16s} median {med[mode]:7.1f}  rounds {' '.join(f'{x:.0f}' for x in v)}")
fastest = max(med[m] for m in ("torch-eager", "torch-compile", "torch-autocast"))
print(f"float32 / eager {med['vlmkit-float32'] / med['torch-eager']:.2f}x, "
      f"float32 / compile {med['vlmkit-float32'] / med['torch-compile']:.2f}x, "
      f"bf16 / fastest PyTorch mode {med['vlmkit-bf16'] / fastest:.2f}x")
PY
