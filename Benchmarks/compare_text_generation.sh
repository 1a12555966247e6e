#!/usr/bin/env bash
# VLMKit's Llama decoding against HF transformers' `generate` (Benchmarks/peer_llama_generate.py) on
# the same checkpoint, float32 and bfloat16, alternating rounds; prints medians and ratios.
#
#   Benchmarks/compare_text_generation.sh [rounds]     # default 3
#   PEER_PYTHON=path/to/venv/bin/python MODEL=some/dir Benchmarks/compare_text_generation.sh 5
#
# The peer creates each checkpoint on first use (a seeded random 190M-parameter Llama; the bf16
# directory holds the same model rounded to bf16). Decoding is bound by memory bandwidth, which
# on a shared host moves between runs: each VLMKit line carries the read bandwidth it measured.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
PEER_PYTHON=${PEER_PYTHON:-python3}
MODEL=${MODEL:-${TMPDIR:-/tmp}/vlmkit-bench-llama}   # kept between runs: the peer builds it once
LOG=${LOG:-$(mktemp -t vlmkit-compare-text.XXXXXX)}

swift build -c release --product vlm >&2
VLM=$(swift build -c release --show-bin-path)/vlm

echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" | tee "$LOG"
for round in $(seq "$ROUNDS"); do
    for dtype in float32 bfloat16; do
        dir=$MODEL; [ "$dtype" = bfloat16 ] && dir=$MODEL-bf16
        out=$("$PEER_PYTHON" Benchmarks/peer_llama_generate.py --model "$dir" --dtype "$dtype" | tail -1)
        echo "$dtype $round peer $out" | tee -a "$LOG"
        out=$("$VLM" bench text-generation --model "$dir" | tail -1)
        echo "$dtype $round vlmkit $out" | tee -a "$LOG"
    done
done

python3 - "$LOG" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    if line.startswith("#"):
        continue
    dtype, _, side, payload = line.split(" ", 3)
    rows.setdefault((dtype, side), []).append(json.loads(payload))
print(f"{'dtype':9} {'decode tok/s VLMKit / peer':>28} {'ratio':>6} {'prefill ms VLMKit / peer':>26} {'peak MB VLMKit / peer':>23} {'bandwidth GB/s':>15}")
for dtype in ("float32", "bfloat16"):
    ours, peer = rows[(dtype, "vlmkit")], rows[(dtype, "peer")]
    med = lambda runs, key: statistics.median(r[key] for r in runs)
    decode = (med(ours, "decode_tokens_per_s"), med(peer, "decode_tokens_per_s"))
    prefill = (med(ours, "prefill_ms"), med(peer, "prefill_ms"))
    rss = (med(ours, "peak_rss_mb"), med(peer, "peak_rss_mb"))
    bandwidth = [r["bandwidth_gb_s"] for r in ours]
    print(f"{dtype:9} {decode[0]:13.1f} / {decode[1]:<12.1f} {decode[0] / decode[1]:5.2f}x {prefill[0]:12.1f} / {prefill[1]:<11.1f}"
          f" {rss[0]:10.0f} / {rss[1]:<10.0f} {min(bandwidth):6.1f}-{max(bandwidth):.1f}")
PY
echo "raw log: $LOG"
