#!/usr/bin/env bash
# bench_mpi.sh — data parallelism on this machine: the same training job (lo10 train, 4096
# token slots per step, fp32) as 1 process x 2 threads and as 2 processes x 1 thread under
# mpirun, for each preset in BENCH_MPI_PRESETS (default "tiny small"), STEPS timed steps after
# 2 warm-up steps. Prints tokens/s of both, their ratio, the seconds per step in
# communication of the 2-process run (the log's "comm_s": the collectives, including the
# wait for the slower rank), the bytes each rank sends and receives per step in the
# gradient all-reduce (a ring all-reduce moves 2 (N-1)/N of the gradient, 4 bytes per
# parameter, per rank), and the bandwidth that implies; then the all-reduce alone
# (bench_allreduce, after a barrier), which tells the transfer from the waiting. Then the
# scaling model of README
# "Across processes and machines" with this machine's step time: for 2, 8 and 32 machines
# like this one on 10 and 100 Gbit/s, the time per step in the all-reduce
# (2 (N-1)/N x 4 P bytes / bandwidth + 2 (N-1) x 30 us of latency) and the efficiency
# t1/N / (t1/N + that), the same global step shared by N machines, no overlap.
# Skips with a message when ecr was built without MPI or mpirun is missing.
set -eu
ECR_BIN=${ECR_BIN:-build/ecr}
STEPS=${BENCH_MPI_STEPS:-10}
PRESETS=${BENCH_MPI_PRESETS:-tiny small base}
if "$ECR_BIN" --version | grep -q '^mpi: none' || ! command -v mpirun >/dev/null; then
    echo "bench_mpi: SKIP (ecr without MPI or no mpirun: apt-get install openmpi-bin libopenmpi-dev, then make)"
    exit 0
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$ECR_BIN" tokenizer train --data build/data/lo10/train.jsonl --vocab-size 8192 --out "$T/tok.json" --quiet
"$ECR_BIN" prepare --data build/data/lo10/train.jsonl --tokenizer "$T/tok.json" --out "$T/train.st" --quiet

# summary LOG WARM: "tokens/s comm_s_per_step" over the steps after WARM
summary() {
    python3 - "$1" "$2" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
w = int(sys.argv[2])
t = recs[-1]["elapsed_s"] - recs[w - 1]["elapsed_s"]
tok = recs[-1]["tokens"] - recs[w - 1]["tokens"]
comm = [r.get("comm_s", 0.0) for r in recs[w:]]
print(tok / t, sum(comm) / len(comm))
PY
}

echo "| preset | parameters | 1 process x 2 threads, tokens/s | 2 processes x 1 thread, tokens/s | ratio | comm s/step | gradient bytes per rank per step | implied bandwidth |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for p in $PRESETS; do
    A=(--data "$T/train.st" --model "$p" --steps $((STEPS + 2)) --tokens-per-step 4096 --precision fp32 --seed 1)
    "$ECR_BIN" train "${A[@]}" --threads 2 --out "$T/one-$p" 2>"$T/one-$p.err"
    mpirun -np 2 --oversubscribe --bind-to none "$ECR_BIN" train "${A[@]}" --threads 1 --out "$T/two-$p" 2>"$T/two-$p.err"
    np=$(sed -n 's/.* \([0-9]*\) parameters.*/\1/p' "$T/one-$p.err" | head -1)
    read -r one _ < <(summary "$T/one-$p/log.jsonl" 2)
    read -r two comm < <(summary "$T/two-$p/log.jsonl" 2)
    python3 - "$p" "$np" "$one" "$two" "$comm" <<'PY'
import sys
p, n = sys.argv[1], int(sys.argv[2])
one, two, comm = map(float, sys.argv[3:6])
moved = 2 * (2 - 1) / 2 * 4 * n  # ring all-reduce over 2 ranks: 2 (N-1)/N x 4 bytes x params
print(f"| {p} | {n:,} | {one:,.0f} | {two:,.0f} | {two / one:.2f} | {comm:.4f} | {moved / 1e6:.1f} MB | "
      f"{moved / comm / 1e9 if comm > 0 else 0:.2f} GB/s |")
PY
    echo "$p $np $one $comm" >>"$T/scaling"
done
# the all-reduce alone, after a barrier (no wait for the slower rank), for each gradient size
BENCH_DIR=$(dirname "$ECR_BIN")/bench
echo
if [ -x "$BENCH_DIR/bench_allreduce" ]; then
    mpirun -np 2 --oversubscribe --bind-to none "$BENCH_DIR/bench_allreduce" $(awk '{print $2}' "$T/scaling") >"$T/allreduce"
    echo "| preset | gradient | all-reduce alone, 2 processes (bench_allreduce) | its bandwidth | the trainer's comm_s per step | the rest: waiting for the slower rank, the small collectives |"
    echo "| --- | --- | --- | --- | --- | --- |"
    paste -d' ' "$T/scaling" "$T/allreduce" | while read -r p n _ comm _ t; do
        awk -v p="$p" -v n="$n" -v c="$comm" -v t="$t" 'BEGIN {
            printf "| %s | %.1f MB | %.1f ms | %.2f GB/s | %.1f ms | %.1f ms |\n", p, 4 * n / 1e6, t * 1e3, 4 * n / t / 1e9, c * 1e3, (c - t) * 1e3 }'
    done
else
    echo "bench_mpi: $BENCH_DIR/bench_allreduce not built (make bench builds it)"
fi
echo
echo "scaling model (4096 token slots per step shared by N machines like this one, fp32 gradients):"
python3 - "$T/scaling" <<'PY'
import sys
print("| preset | gradient | step time, 1 machine | N | all-reduce at 10 Gbit/s | efficiency | all-reduce at 100 Gbit/s | efficiency |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for line in open(sys.argv[1]):
    p, n, one, _ = line.split()
    n, t1 = int(n), 4096 / float(one)
    for N in (2, 8, 32):
        row = f"| {p} | {4 * n / 1e6:.1f} MB | {t1:.2f} s | {N} |"
        for gbit in (10, 100):
            t = 2 * (N - 1) / N * 4 * n / (gbit * 1e9 / 8) + 2 * (N - 1) * 30e-6
            row += f" {t * 1e3:.1f} ms | {t1 / N / (t1 / N + t) * 100:.0f}% |"
        print(row)
PY
