#!/usr/bin/env bash
# bench_train.sh — training speed and peak memory, ecr against PyTorch in one run.
#
# The same Llama-style model (presets small 4x256 and base 6x384, vocabulary 8192), the
# same packed batches of 4096 token slots (16 rows x 256) from lo10 train, 2 threads,
# AdamW and gradient clipping, STEPS timed steps after 2 warm-up steps. Prints token
# slots/s of each, the ratio, achieved GFLOP/s and share of the machine's fp32 peak
# (485 GFLOP/s on 2 cores), and peak resident memory of each process.
# Requirements: ecr >= 1.2x PyTorch on base, >= 1.0x on small; memory <= PyTorch's.
# Needs python3-torch; skipped with a message without it.
set -eu
ECR_BIN=${ECR_BIN:-build/ecr}
STEPS=${BENCH_TRAIN_STEPS:-10}
PRESETS=${BENCH_TRAIN_PRESETS:-small base}
THREADS=2
PEAK=485
OB=/usr/lib/$(gcc -print-multiarch)/openblas-openmp
# Debian's python3-torch lives in the system interpreter, which may not be first on PATH.
PY=""
for c in /usr/bin/python3 python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import torch' 2>/dev/null; then PY=$c; break; fi
done
if [ -z "$PY" ]; then
    echo "bench_train: SKIP (python3-torch is not installed: apt-get install python3-torch)"
    exit 0
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$ECR_BIN" tokenizer train --data build/data/lo10/train.jsonl --vocab-size 8192 --out "$T/tok.json" --quiet
"$ECR_BIN" prepare --data build/data/lo10/train.jsonl --tokenizer "$T/tok.json" --out "$T/train.st" --quiet

# peak_rss CMD...: runs CMD, then prints its peak resident set in MiB on fd 3.
peak_rss() {
    "$PY" -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, file=sys.stderr)
sys.exit(r.returncode)' "$@"
}

fail=0
for p in $PRESETS; do
    warm=2
    peak_rss "$ECR_BIN" train --data "$T/train.st" --model "$p" --steps $((warm + STEPS)) \
        --threads $THREADS --log-every 1 --quiet --out "$T/ecr-$p" 2>"$T/ecr-$p.rss"
    ecr=$("$PY" - "$T/ecr-$p/log.jsonl" "$warm" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l and "val_loss" not in l]
w = int(sys.argv[2])
t = recs[-1]["elapsed_s"] - recs[w - 1]["elapsed_s"]
print((len(recs) - w) * 4096 / t)
PY
)
    OMP_NUM_THREADS=$THREADS LD_LIBRARY_PATH=$OB peak_rss "$PY" bench/torch_train.py "$T/train.st" "$p" \
        "$STEPS" $THREADS 4096 $warm >"$T/torch-$p.json" 2>"$T/torch-$p.rss"
    "$PY" - "$p" "$ecr" "$T/torch-$p.json" "$(tail -1 "$T/ecr-$p.rss")" "$(tail -1 "$T/torch-$p.rss")" $PEAK <<'PY' || fail=1
import json, sys
p, ecr, tj, ecr_mb, torch_mb, peak = sys.argv[1], float(sys.argv[2]), json.load(open(sys.argv[3])), float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
d, L, hid = {"small": (256, 4, 704), "base": (384, 6, 1024)}[p]
V = 8192
# matrix-product FLOPs per token slot, forward + backward (6 per weight), attention excluded
flops = 6 * (L * (4 * d * d + 3 * d * hid) + V * d)
torch_tps = tj["slots_per_s"]
ratio = ecr / torch_tps
need = 1.2 if p == "base" else 1.0
print(f"bench_train {p:5s}: ecr {ecr:7.0f} tok/s ({ecr*flops/1e9:5.1f} GFLOP/s, {100*ecr*flops/1e9/peak:4.1f}% of peak), "
      f"PyTorch {torch_tps:7.0f} tok/s ({torch_tps*flops/1e9:5.1f} GFLOP/s); ratio {ratio:.2f}x (need >= {need}): "
      f"{'PASS' if ratio >= need else 'FAIL'}")
print(f"bench_train {p:5s}: peak memory ecr {ecr_mb:.0f} MiB, PyTorch {torch_mb:.0f} MiB; ratio {ecr_mb/torch_mb:.2f} "
      f"(need <= 1): {'PASS' if ecr_mb <= torch_mb else 'FAIL'}")
sys.exit(0 if ratio >= need and ecr_mb <= torch_mb else 1)
PY
done
exit $fail
