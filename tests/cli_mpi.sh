#!/usr/bin/env bash
# cli_mpi.sh — data parallelism under mpirun (2 ranks on this machine):
#   - equivalence: 2 ranks x 1 thread and 1 rank x 2 threads, same seed and global batch,
#     give the same loss (and total, and each term) at every step of a 20-step run, for
#     lm, ecr (anchors) and lm+contrastive, within the tolerance derived below;
#   - a resume with another number of processes continues the same optimisation;
#   - ecr embed under mpirun writes the same bytes as one process, ecr eval the same numbers;
#   - refusals: a step with fewer rows than processes, a command that runs as one process,
#     a rank that fails (named, the job ends, no half-written checkpoint).
# Skips when the binary was built without MPI or mpirun is missing. MPI_OBJECTIVES (default
# "lm ecr lm+contrastive") picks the objectives compared.
#
# Tolerance. Both sides run in fp32 (--precision fp32: auto would pick bf16 on a CPU with
# AVX512-BF16 or AMX, whose roundings are 2^-8, not 2^-24, and the bounds below would not
# hold) and pack the same global batch; what differs is rounding. (1) The
# matrix products of a forward run over 4 rows in each rank and over 8 in one process, and
# a BLAS may block them differently: each element of h can move by a float32 rounding,
# 2^-24 = 6e-8 relative. (2) The step's gradient is one fp32 accumulation over all rows in
# one process and the sum of two partial gradients over ranks: again about 6e-8 per
# element. AdamW's update m / (sqrt(v) + eps) does not depend on the gradient's scale, so a
# relative change r of a gradient moves its update by about r lr: 20 steps at lr 1e-3 move
# the weights by about 20 x 1e-3 x 6e-8 ~ 1e-9 (they are of order 0.02 to 1). Hence:
#   - the LM loss averages thousands of token losses, each moved by about 6e-8: it must
#     match within 2 units of its 7th significant digit, the digit the log prints ("%.7g";
#     one unit for two nearly equal numbers rounding to neighbouring digits, one of margin);
#   - the embedding terms divide cosines by a temperature (0.05 here: x 20) and average a
#     few dozen texts; the total adds them, the gradient norm sums their gradients: 20 x
#     6e-8 ~ 1.2e-6 relative per step; these must match within 1e-5 relative (8 times that).
# A real difference moves the 3rd or 4th digit from the first step on: a wrong gradient
# scale shows in the gradient norm (AdamW hides it from the loss), a rank's rows missing
# or a term that sees half the step in the loss and the terms.
. "$(dirname "$0")/cli_lib.sh"

if ! "$ECR" --version 2>/dev/null | grep -q '^mpi: ' || "$ECR" --version | grep -q '^mpi: none'; then
    echo "cli_mpi: SKIP: $ECR was built without MPI (apt-get install libopenmpi-dev, then make)"
    exit 0
fi
if ! command -v mpirun >/dev/null; then
    echo "cli_mpi: SKIP: mpirun not found (apt-get install openmpi-bin)"
    exit 0
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 # CI runs as root
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none # one machine, any container
# under AddressSanitizer: Open MPI's own allocations at exit are not ours to report
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
# 2 ranks on a busy 2-core machine: no binding, oversubscription allowed
MPIRUN=(mpirun -np 2 --oversubscribe --bind-to none)
VALID="$ROOT/build/data/lo10/valid.jsonl"
[ -f "$VALID" ] || { bad "missing $VALID (make test prepares it)"; cli_done; exit; }

head -n 400 "$VALID" >"$T/small.jsonl"
"$ECR" tokenizer train --data "$T/small.jsonl" --vocab-size 320 --out "$T/tok.json" --quiet &&
    "$ECR" prepare --data "$T/small.jsonl" --tokenizer "$T/tok.json" --out "$T/small.safetensors" --quiet ||
    bad "could not prepare the data"
# 8 rows of 64 per step: each rank 4
B=(--data "$T/small.safetensors" --model tiny --set dim=32 --set n_layers=2 --set n_heads=2 --set hidden_dim=64
   --set max_seq_len=64 --seq-len 64 --tokens-per-step 512 --seed 5 --precision fp32 --quiet)
"$ECR" train "${B[@]}" --steps 6 --threads 2 --out "$T/teacher" 2>"$T/err" &&
    "$ECR" embed --model "$T/teacher" --data "$T/small.safetensors" --raw --out "$T/emb.npy" --quiet 2>>"$T/err" &&
    "$ECR" anchors --emb "$T/emb.npy" --k 8 --out "$T/anchors.safetensors" --quiet 2>>"$T/err" ||
    bad "could not make the teacher and anchors: $(head -c 300 "$T/err")"

# same_steps A B: every step record of log A matches B's (the same steps; the loss within 2
# units of the 7th digit, the total, the terms and the gradient norm within 1e-5 relative);
# prints the value closest to its tolerance
same_steps() {
    python3 - "$1" "$2" <<'EOF'
import json, math, sys
def steps(p):
    return [r for r in map(json.loads, open(p)) if "loss" in r]
a, b = steps(sys.argv[1]), steps(sys.argv[2])
if [r["step"] for r in a] != [r["step"] for r in b]:
    print("steps differ"); sys.exit(1)
worst, wk = 0.0, "-"
for x, y in zip(a, b):
    for k in ("loss", "total", "ecr", "contrastive", "orth", "grad_norm"):
        if k in x or k in y:
            if k not in x or k not in y:
                print(f"step {x['step']}: {k} in one log only"); sys.exit(1)
            unit = 10 ** (math.floor(math.log10(max(abs(x[k]), 1e-30))) - 6)  # of the 7th digit
            d = abs(x[k] - y[k]) / unit
            tol = 2.001 if k == "loss" else 1e-5 * max(abs(x[k]), 1e-30) / unit
            if d / tol > worst: worst, wk = d / tol, f"{k}: {d:.0f} units of the 7th digit"
            if d > tol:
                print(f"step {x['step']}: {k} {x[k]} vs {y[k]} ({d:.1f} units of the 7th digit)"); sys.exit(1)
print(f"{len(a)} steps; closest to its tolerance: {wk} ({worst * 100:.0f}% of it)")
EOF
}
command -v python3 >/dev/null || { echo "cli_mpi: SKIP: python3 not found (the log comparison)"; exit 0; }

for obj in ${MPI_OBJECTIVES:-lm ecr lm+contrastive}; do
    case $obj in
        lm) X=() ;;
        ecr) X=(--anchors "$T/anchors.safetensors") ;;
        lm+contrastive) X=(--objective lm+contrastive) ;;
    esac
    expect 0 "$obj: 1 process x 2 threads" -- "$ECR" train "${B[@]}" "${X[@]}" --steps 20 --threads 2 --out "$T/one-$obj"
    expect 0 "$obj: 2 processes x 1 thread" -- "${MPIRUN[@]}" "$ECR" train "${B[@]}" "${X[@]}" --steps 20 --threads 1 \
        --out "$T/two-$obj"
    if r=$(same_steps "$T/one-$obj/log.jsonl" "$T/two-$obj/log.jsonl"); then
        ok
        echo "cli_mpi: $obj: 2 ranks x 1 thread = 1 rank x 2 threads: $r"
    else
        bad "$obj: 2 ranks and 1 rank differ: $r"
    fi
    has "$T/two-$obj/log.jsonl" '"comm_s":' "$obj: the log records the time in communication"
    has "$T/two-$obj/run.json" '"processes":[[:space:]]*2' "$obj: run.json records the processes"
done

# ---- a resume with another number of processes --------------------------------------------
# (one process runs 1 thread from here on: the comparisons have fp32 tolerances, and a
# 2-thread process beside another test on a 2-core machine spends most of its time waiting)
"$ECR" train "${B[@]}" --steps 10 --threads 1 --out "$T/r1" 2>/dev/null &&
    "$ECR" train "${B[@]}" --steps 20 --threads 1 --out "$T/r1" --resume 2>/dev/null || bad "1-process resume failed"
expect 0 "2 processes, then resumed by 1" -- "${MPIRUN[@]}" "$ECR" train "${B[@]}" --steps 10 --threads 1 --out "$T/r2"
"$ECR" inspect "$T/r2/train_state.safetensors" >"$T/inspect" 2>&1
has "$T/inspect" "processes *2" "the checkpoint records the processes that wrote it"
LOUD=()
for x in "${B[@]}"; do [ "$x" = --quiet ] || LOUD+=("$x"); done
expect 0 "resumed by 1 process" -- "$ECR" train "${LOUD[@]}" --steps 20 --threads 1 --out "$T/r2" --resume
has "$T/err" "written by a run of 2 processes, this one has 1" "a resume with another N says so"
if r=$(same_steps "$T/r1/log.jsonl" "$T/r2/log.jsonl"); then ok; else bad "resume with another N: $r"; fi
expect 0 "1 process, then resumed by 2" -- "$ECR" train "${B[@]}" --steps 10 --threads 1 --out "$T/r3"
expect 0 "resumed by 2 processes" -- "${MPIRUN[@]}" "$ECR" train "${B[@]}" --steps 20 --threads 1 --out "$T/r3" --resume
if r=$(same_steps "$T/r1/log.jsonl" "$T/r3/log.jsonl"); then ok; else bad "resume by 2 processes: $r"; fi

# ---- embed: the same bytes as one process ------------------------------------------------
expect 0 "embed, 1 process" -- "$ECR" embed --model "$T/teacher" --data "$T/small.safetensors" --threads 1 \
    --batch-tokens 512 --out "$T/e1.npy" --quiet
expect 0 "embed, 2 processes" -- "${MPIRUN[@]}" "$ECR" embed --model "$T/teacher" --data "$T/small.safetensors" \
    --threads 1 --batch-tokens 512 --out "$T/e2.npy" --quiet
if cmp -s "$T/e1.npy" "$T/e2.npy"; then ok; else bad "embed under mpirun differs from one process's"; fi

# ---- eval: the same tables and numbers as one process (timings aside) ------------------
expect 0 "eval, 1 process" -- "$ECR" eval --model "$T/teacher" --data "$T/small.safetensors" --threads 1 \
    --tokens-per-batch 512 --json "$T/ev1.json" --quiet
mv "$T/out" "$T/ev1.txt"
expect 0 "eval, 2 processes" -- "${MPIRUN[@]}" "$ECR" eval --model "$T/teacher" --data "$T/small.safetensors" \
    --threads 1 --tokens-per-batch 512 --json "$T/ev2.json" --quiet
if cmp -s "$T/ev1.txt" "$T/out" && cmp -s <(grep -v '"seconds"' "$T/ev1.json") <(grep -v '"seconds"' "$T/ev2.json")
then ok; else bad "eval under mpirun differs from one process's"; fi

# ---- refusals -------------------------------------------------------------------------------
expect 2 "a step of 1 row for 2 processes" -- "${MPIRUN[@]}" "$ECR" train "${B[@]}" --steps 2 --tokens-per-step 64 \
    --threads 1 --out "$T/few"
has "$T/err" "cannot be shared by 2 processes" "the row refusal says why"
expect 2 "a one-process command under mpirun" -- "${MPIRUN[@]}" "$ECR" tokenizer train --data "$T/small.jsonl" \
    --vocab-size 300 --out "$T/tok2.json"
has "$T/err" "runs as one process" "the refusal says why"
[ ! -e "$T/tok2.json" ] && ok || bad "the refused command wrote its output"
# rank 1 cannot read its data: the job ends, rank 1 named, nothing half-written
echo "not a safetensors file" >"$T/bad.safetensors"
expect 2 "rank 1's data unreadable" -- "${MPIRUN[@]}" sh -c 'if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then d=$1; else d=$2; fi
    shift 2; exec "$@" --data "$d"' sh "$T/bad.safetensors" "$T/small.safetensors" "$ECR" train "${B[@]}" --steps 4 \
    --threads 1 --out "$T/fail"
has "$T/err" "rank 1 of 2: .*bad.safetensors" "the failing rank and file are named"
[ ! -e "$T/fail/train_state.safetensors" ] && ok || bad "a failed job left a checkpoint"
# rank 1 killed mid-run, as soon as the first checkpoint is written (a fixed delay let the
# whole run finish first on a fast machine): the job ends; the folder resumes (one process)
# to the full run
"${MPIRUN[@]}" sh -c 'if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then
        (while [ ! -f "$1/train_state.safetensors" ]; do sleep 0.02; done; kill -9 $$) &
    fi; shift; exec "$@"' sh "$T/killed" \
    "$ECR" train "${B[@]}" --steps 100 --save-every 5 --threads 1 --out "$T/killed" >/dev/null 2>&1
rc=$?
[ $rc != 0 ] && ok || bad "a job with a killed rank exited 0"
if [ -f "$T/killed/train_state.safetensors" ]; then
    expect 0 "the folder of a killed job resumes" -- "$ECR" train "${B[@]}" --steps 100 --save-every 5 --threads 1 \
        --out "$T/killed" --resume
    n=$(grep -c '"loss"' "$T/killed/log.jsonl")
    [ "$n" = 100 ] && ok || bad "the resumed log holds $n step records, not 100"
else
    echo "cli_mpi: note: the job was killed before its first checkpoint"
fi
cli_done
