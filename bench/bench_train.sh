#!/usr/bin/env bash
# bench_train.sh — training speed and peak memory, ecr against PyTorch, fp32 and bf16, in
# one run.
#
# The same Llama-style model (presets small 4x256 and base 6x384, vocabulary 8192), the
# same packed batches of 4096 token slots (16 rows x 256) from lo10 train, 2 threads,
# AdamW and gradient clipping, STEPS timed steps after 2 warm-up steps, four ways:
#   ecr fp32, ecr bf16 (--precision bf16: oneDNN; skipped where this CPU or build has no
#   bf16 engine, see `ecr --version`), PyTorch fp32, PyTorch with bf16 autocast.
# Prints token slots/s, achieved GFLOP/s of the matrix products, that rate against this
# CPU's fp32 FMA peak and (bf16 rows) against oneDNN's bf16 matmul rate, both measured by
# bench_matmul in the same run, and the peak resident memory of each process.
# Requirements: ecr fp32 >= 1.2x PyTorch fp32 on base, >= 1.0x on small, memory <= PyTorch's;
# where bf16 runs: ecr bf16 >= 2.5x ecr fp32 and >= 2x PyTorch bf16 on base, its memory
# <= ecr fp32's. Needs python3-torch; skipped with a message without it.
set -eu
ECR_BIN=${ECR_BIN:-build/ecr}
BUILD=$(dirname "$ECR_BIN")
STEPS=${BENCH_TRAIN_STEPS:-10}
PRESETS=${BENCH_TRAIN_PRESETS:-small base}
THREADS=2
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

# this CPU's rates: fp32 FMA peak, sgemm, bf16 matmul (0 without a bf16 engine)
read -r PEAK SGEMM BF16RATE < <("$BUILD/bench/bench_matmul" --threads $THREADS --rates)
BF16_ENGINE=$("$ECR_BIN" --version | sed -n 's/^bf16: //p')
echo "bench_train: fp32 FMA peak $PEAK GFLOP/s, sgemm $SGEMM, bf16 matmul $BF16RATE (engine: $BF16_ENGINE)"

# peak_rss CMD...: runs CMD, then prints its peak resident set in MiB as the last line of stderr.
peak_rss() {
    "$PY" -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, file=sys.stderr)
sys.exit(r.returncode)' "$@"
}

# ecr_run PRESET PRECISION: tokens/s of the timed steps on stdout (from the log)
ecr_run() {
    local p=$1 prec=$2 warm=2
    peak_rss "$ECR_BIN" train --data "$T/train.st" --model "$p" --steps $((warm + STEPS)) --precision "$prec" \
        --threads $THREADS --log-every 1 --quiet --out "$T/ecr-$p-$prec" 2>"$T/ecr-$p-$prec.rss"
    "$PY" - "$T/ecr-$p-$prec/log.jsonl" "$warm" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l and "val_loss" not in l]
w = int(sys.argv[2])
t = recs[-1]["elapsed_s"] - recs[w - 1]["elapsed_s"]
print((len(recs) - w) * 4096 / t)
PY
}

fail=0
for p in $PRESETS; do
    ecr32=$(ecr_run "$p" fp32)
    ecr16=0
    if [ "${BF16_ENGINE#none}" = "$BF16_ENGINE" ]; then ecr16=$(ecr_run "$p" bf16); fi
    for prec in fp32 bf16; do
        OMP_NUM_THREADS=$THREADS LD_LIBRARY_PATH=$OB peak_rss "$PY" bench/torch_train.py "$T/train.st" "$p" \
            "$STEPS" $THREADS 4096 2 $prec >"$T/torch-$p-$prec.json" 2>"$T/torch-$p-$prec.rss"
    done
    mem() { if [ -f "$1" ]; then tail -1 "$1"; else echo 0; fi; }
    "$PY" - "$p" "$ecr32" "$ecr16" "$T/torch-$p-fp32.json" "$T/torch-$p-bf16.json" \
        "$(mem "$T/ecr-$p-fp32.rss")" "$(mem "$T/ecr-$p-bf16.rss")" "$(mem "$T/torch-$p-fp32.rss")" \
        "$(mem "$T/torch-$p-bf16.rss")" "$PEAK" "$BF16RATE" "$BF16_ENGINE" <<'PY' || fail=1
import json, sys
p = sys.argv[1]
ecr32, ecr16 = float(sys.argv[2]), float(sys.argv[3])
t32, t16 = (json.load(open(f))["slots_per_s"] for f in sys.argv[4:6])
m_e32, m_e16, m_t32, m_t16 = (float(x) for x in sys.argv[6:10])
peak, bf16rate, engine = float(sys.argv[10]), float(sys.argv[11]), sys.argv[12]
d, L, hid = {"small": (256, 4, 704), "base": (384, 6, 1024)}[p]
V = 8192
# matrix-product FLOPs per token slot, forward + backward (6 per weight), attention excluded
flops = 6 * (L * (4 * d * d + 3 * d * hid) + V * d)
def row(name, tps, mb, bf16):
    g = tps * flops / 1e9
    vs = f"{100 * g / peak:5.1f}% of fp32 peak"
    if bf16 and bf16rate > 0:
        vs += f", {100 * g / bf16rate:5.1f}% of bf16 matmul"
    print(f"bench_train {p:5s}: {name:15s} {tps:7.0f} tok/s  {g:6.1f} GFLOP/s ({vs})  peak {mb:5.0f} MiB")
row("ecr fp32", ecr32, m_e32, False)
if ecr16 > 0:
    row("ecr bf16", ecr16, m_e16, True)
else:
    print(f"bench_train {p:5s}: ecr bf16        n/a ({engine})")
row("PyTorch fp32", t32, m_t32, False)
row("PyTorch bf16", t16, m_t16, True)
ok = True
def check(what, value, need, higher=True):
    global ok
    good = value >= need if higher else value <= need
    ok &= good
    print(f"bench_train {p:5s}: {what} {value:.2f} (need {'>=' if higher else '<='} {need}): {'PASS' if good else 'FAIL'}")
check("ecr fp32 / PyTorch fp32", ecr32 / t32, 1.2 if p == "base" else 1.0)
check("ecr fp32 / PyTorch fp32 memory", m_e32 / m_t32, 1.0, higher=False)
print(f"bench_train {p:5s}: PyTorch bf16 / PyTorch fp32 {t16 / t32:.2f}")
if ecr16 > 0:
    if p == "base":
        check("ecr bf16 / ecr fp32", ecr16 / ecr32, 2.5)
        check("ecr bf16 / PyTorch bf16", ecr16 / t16, 2.0)
    else:
        print(f"bench_train {p:5s}: ecr bf16 / ecr fp32 {ecr16 / ecr32:.2f}, / PyTorch bf16 {ecr16 / t16:.2f}")
    check("ecr bf16 / ecr fp32 memory", m_e16 / m_e32, 1.0, higher=False)
else:
    print(f"bench_train {p:5s}: ecr bf16 / PyTorch bf16: SKIP (no bf16 engine here)")
sys.exit(0 if ok else 1)
PY
done
exit $fail
