#!/usr/bin/env bash
# precision.sh — `make precision`: does training in bf16 learn what fp32 learns? Resumable.
#
#   scripts/precision.sh [--only REGEX] [--list]
#
# Runs (each NAME-fp32 beside NAME-bf16, same seed, data, steps and evaluation):
#   demo-none, demo-ecr   the `make demo` students: tiny, 600 steps of 4,096 tokens, seed 1,
#                         without and with ECR from the shipped anchors (ECR as the
#                         study ran it, before orth and rel joined ECR's defaults:
#                         --orth-weight 0 --rel-weight 0)
#   small-none            small, 500 steps (the experiment's main-small-none-s1)
#   tiny-ecr-bf16-s1      the experiment's main-tiny-ecr-s1 (tiny, 1,000 steps) in bf16, to
#                         set its geometry beside that run's 3-seed spread in fp32
# Each run is evaluated in its own precision; demo-ecr-fp32 is evaluated in bf16 as well
# (eval-bf16.json: the same model, inference in bf16 against fp32).
# A finished run is results/precision/NAME/ (run.json, eval.json, eval.txt, the log thinned
# to every 10th step plus the validation records, engine.txt: the bf16 engine that ran);
# a run whose folder exists is skipped; an interrupted one resumes from its checkpoint in
# build/precision/runs/NAME. Then results/precision/summary.md compares the pairs.
#
# Where the CPU has no bf16 kernels (ecr --version: "bf16: none"), bf16 runs on the
# reference engine (ECR_BF16_EMULATE=1): the same bf16 roundings, summed in another order,
# at fp32's speed or below. Env: PREC_THREADS (2), PREC_WORK, PREC_RESULTS.
set -euo pipefail
cd "$(dirname "$0")/.."
ECR=${ECR_BIN:-build/ecr}
W=${PREC_WORK:-build/precision}
RES=${PREC_RESULTS:-results/precision}
THREADS=${PREC_THREADS:-2}
ANCH=teacher/anchors.safetensors
ONLY=.
LIST=0
while [ $# -gt 0 ]; do
    case $1 in
    --only) ONLY=${2:?--only needs a REGEX}; shift 2 ;;
    --list) LIST=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "precision: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
say() { printf '%s\n' "$*" >&2; }

if "$ECR" --version | grep -q '^bf16: none'; then export ECR_BF16_EMULATE=1; fi

# NAME PRESET STEPS SEED PRECISION FLAGS...
plan() {
    local p
    for p in fp32 bf16; do echo "demo-none-$p tiny 600 1 $p"; done
    for p in fp32 bf16; do echo "demo-ecr-$p tiny 600 1 $p --anchors $ANCH --orth-weight 0 --rel-weight 0"; done
    for p in fp32 bf16; do echo "small-none-$p small 500 1 $p"; done
    echo "tiny-ecr-bf16-s1 tiny 1000 1 bf16 --anchors $ANCH --orth-weight 0 --rel-weight 0"
}

setup() {
    mkdir -p "$W/runs" "$RES"
    local set
    for set in train valid; do
        [ -f "$W/$set.safetensors" ] || "$ECR" prepare --data "build/data/lo10/$set.jsonl" \
            --tokenizer teacher/model/tokenizer.json --out "$W/$set.safetensors"
    done
    [ -f "$W/teacher_valid.npy" ] || "$ECR" embed --model teacher/model --data "$W/valid.safetensors" --raw \
        --threads "$THREADS" --precision fp32 --out "$W/teacher_valid.npy"
}

evaluate() { # evaluate MODEL_DIR PRECISION JSON TXT
    "$ECR" eval --model "$1" --data "$W/valid.safetensors" --teacher-emb "$W/teacher_valid.npy" \
        --anchors "$ANCH" --log "$1/log.jsonl" --threads "$THREADS" --precision "$2" --quiet --json "$3" >"$4"
}

run_one() { # run_one NAME PRESET STEPS SEED PRECISION [FLAGS...]
    local name=$1 preset=$2 steps=$3 seed=$4 prec=$5
    shift 5
    local out=$W/runs/$name
    local args=(--data "$W/train.safetensors" --valid "$W/valid.safetensors" --model "$preset" --steps "$steps"
        --seed "$seed" --threads "$THREADS" --eval-every $((steps / 6)) --save-every 100 --log-every 100
        --precision "$prec" --out "$out" "$@")
    if [ -f "$out/run.json" ]; then
        say "precision: $name: trained already"
    elif [ -f "$out/train_state.safetensors" ]; then
        "$ECR" train "${args[@]}" --resume 2> >(tee "$out/train.err" >&2)
    else
        rm -rf "$out"
        mkdir -p "$out"
        "$ECR" train "${args[@]}" 2> >(tee "$out/train.err" >&2)
    fi
    evaluate "$out" "$prec" "$out/eval.json" "$out/eval.txt"
    [ "$name" != demo-ecr-fp32 ] || evaluate "$out" bf16 "$out/eval-bf16.json" "$out/eval-bf16.txt"
    local tmp=$RES/.$name.tmp
    rm -rf "$tmp"
    mkdir -p "$tmp"
    cp "$out/run.json" "$out/eval.json" "$out/eval.txt" "$out/config.json" "$tmp/"
    [ ! -f "$out/eval-bf16.json" ] || cp "$out/eval-bf16.json" "$out/eval-bf16.txt" "$tmp/"
    grep -m1 '^train: precision' "$out/train.err" >"$tmp/engine.txt" || echo "train: precision $prec" >"$tmp/engine.txt"
    awk '/"val_loss"/ || /"step":[0-9]*0,/ {print}' "$out/log.jsonl" >"$tmp/log.jsonl"
    mv "$tmp" "$RES/$name"
}

todo=()
while read -r line; do
    name=${line%% *}
    echo "$name" | grep -Eq -- "$ONLY" || continue
    if [ -d "$RES/$name" ]; then
        [ $LIST = 1 ] && printf '  done  %s\n' "$name"
        continue
    fi
    [ $LIST = 1 ] && printf '  to do %s\n' "$name"
    todo+=("$line")
done < <(plan)
say "precision: ${#todo[@]} runs to do (filter '$ONLY')${ECR_BF16_EMULATE:+; bf16 on the reference engine}"
[ $LIST = 1 ] && exit 0
if [ ${#todo[@]} -gt 0 ]; then
    setup
    i=0
    for r in "${todo[@]}"; do
        i=$((i + 1))
        say ""
        say "== precision: run $i/${#todo[@]}: $r"
        # shellcheck disable=SC2086
        run_one $r
    done
fi
python3 scripts/precision_summary.py "$RES" results/experiment >"$RES/summary.md.tmp" && mv "$RES/summary.md.tmp" "$RES/summary.md"
cat "$RES/summary.md"
