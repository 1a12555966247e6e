#!/usr/bin/env bash
# VLMKit against the PyTorch peers (../shared/bench/peer_mllama_{train,generate}.py) on this machine:
# builds release, then for each OpenBLAS setting runs VLMKit's bench and the peer back to back,
# alternating, for several rounds, and prints medians and the ratios (VLMKit ÷ peer).
#
#   Benchmarks/compare.sh [rounds]          # default 3 rounds
#   PEER_PYTHON=path/to/venv/bin/python PEER_DIR=../shared/bench STEPS=3 Benchmarks/compare.sh 5
#
# Settings: "haswell" = OPENBLAS_CORETYPE=Haswell (the machine's configured default: AVX2 kernels);
# "detected" = OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (OpenBLAS picks its kernels; AVX-512 here).
# The peer uses MKL, so the setting only changes VLMKit; it is rerun anyway so rounds stay paired.
# Each line of the raw log carries the 1-minute load average when the run started: the 2 cores are
# shared, so read the medians with it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
STEPS=${STEPS:-3}
PEER_PYTHON=${PEER_PYTHON:-python3}
PEER_DIR=$(cd "${PEER_DIR:-../shared/bench}" && pwd)
LOG=${LOG:-$(mktemp -t vlmkit-compare.XXXXXX)}

swift build -c release --product vlm >&2
VLM=$(swift build -c release --show-bin-path)/vlm

# Runs a peer script and appends its peak RSS (ru_maxrss) as a last line.
peer() {
    local script=$1; shift
    (cd "$PEER_DIR" && "$PEER_PYTHON" -c '
import resource, runpy, sys
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
print(f"peak_rss_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
' "$script" "$@")
}

load() { cut -d' ' -f1 /proc/loadavg; }

echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); inherited OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-(unset)}" | tee "$LOG"
for setting in haswell detected; do
    # Runs a command (or the peer function) in a subshell with this setting's environment.
    run() (
        unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
        if [ "$setting" = haswell ]; then export OPENBLAS_CORETYPE=Haswell; fi
        "$@"
    )
    for round in $(seq "$ROUNDS"); do
        l=$(load); out=$(run "$VLM" bench train --preset small --steps "$STEPS" | tail -1)
        echo "$setting $round vlmkit train load=$l $out" | tee -a "$LOG"
        l=$(load); out=$(run peer peer_mllama_train.py --steps "$STEPS" | tr '\n' ' ')
        echo "$setting $round peer train load=$l $out" | tee -a "$LOG"
        l=$(load); out=$(run "$VLM" bench generate --preset small | tail -1)
        echo "$setting $round vlmkit generate load=$l $out" | tee -a "$LOG"
        l=$(load); out=$(run peer peer_mllama_generate.py | tr '\n' ' ')
        echo "$setting $round peer generate load=$l $out" | tee -a "$LOG"
    done
done

python3 - "$LOG" <<'PY'
import json, re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    if line.startswith("#"): continue
    setting, rnd, impl, bench, loadf, rest = line.split(" ", 5)
    load = float(loadf.split("=")[1])
    if impl == "vlmkit":
        d = json.loads(rest)
    else:
        d = {}
        for key, pat in [("step_ms", r"step=(\d+) ms"), ("tokens_per_s", r"tokens/s=(\d+)"), ("prefill_ms", r"prefill=(\d+) ms"),
                         ("decode_tokens_per_s", r"decode tokens/s=([\d.]+)"), ("peak_rss_mb", r"peak_rss_mb=(\d+)")]:
            m = re.search(pat, rest)
            if m: d[key] = float(m.group(1))
    d["load"] = load
    rows.setdefault((setting, impl, bench), []).append(d)
med = lambda setting, impl, bench, key: statistics.median(r[key] for r in rows[(setting, impl, bench)])
for setting in ["haswell", "detected"]:
    if (setting, "vlmkit", "train") not in rows: continue
    n = len(rows[(setting, "vlmkit", "train")])
    loads = [r["load"] for k, v in rows.items() if k[0] == setting for r in v]
    print(f"\n== {setting}: medians of {n} alternating rounds (load average {min(loads):.2f}–{max(loads):.2f}) ==")
    t_v, t_p = med(setting, "vlmkit", "train", "tokens_per_s"), med(setting, "peer", "train", "tokens_per_s")
    m_v, m_p = med(setting, "vlmkit", "train", "peak_rss_mb"), med(setting, "peer", "train", "peak_rss_mb")
    print(f"train tokens/s   VLMKit {t_v:7.0f}   PyTorch {t_p:7.0f}   ratio {t_v / t_p:.2f}×   (VLMKit {med(setting, 'vlmkit', 'train', 'gflops'):.0f} GFLOP/s own count)")
    print(f"train peak RSS   VLMKit {m_v:7.0f}   PyTorch {m_p:7.0f}   ratio {m_v / m_p:.2f}  (MB; ≤ 1 is the target)")
    d_v, d_p = med(setting, "vlmkit", "generate", "decode_tokens_per_s"), med(setting, "peer", "generate", "decode_tokens_per_s")
    p_v, p_p = med(setting, "vlmkit", "generate", "prefill_ms"), med(setting, "peer", "generate", "prefill_ms")
    print(f"decode tokens/s  VLMKit {d_v:7.1f}   PyTorch {d_p:7.1f}   ratio {d_v / d_p:.2f}×")
    print(f"prefill ms       VLMKit {p_v:7.1f}   PyTorch {p_p:7.1f}   speed ratio {p_p / p_v:.2f}× (≥ 1: no slower)")
PY
echo "raw log: $LOG"
