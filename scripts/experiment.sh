#!/usr/bin/env bash
# experiment.sh — `make experiment`: the lo10 comparison of DESIGN's methods, and the ECR
# ablations, from the shipped teacher (teacher/). Resumable and split into parts:
#
#   scripts/experiment.sh [--study NAME] [--only REGEX] [--list] [--report-only]
#
#   --study NAME   which study: main (the default; results/experiment/), convergence
#                  (results/convergence/) or stress (results/stress/), see below
#   --only REGEX   run only the runs whose name matches REGEX (grep -E), e.g.
#                  --only '^main-tiny-' or --only 's1$'
#   --list         print the plan (each run, done or to do, estimated time) and stop
#   --report-only  skip training; rebuild the reports from what is in results/
#
# Runs (identical data, steps and evaluation within a size):
#   main-SIZE-METHOD-sSEED   SIZE tiny | small; METHOD none kd feat rkd ecr ecr+kd; seeds 1-3
#   abl-NAME-sSEED           tiny + ECR, one setting changed from the main ECR run
#                            (K = 256, tau = 0.05, lambda = 0.05, hard codes): k64 k1024,
#                            tau0.02 tau0.1, lam0.01 lam0.03 lam0.1 lam0.3, soft, and the two
#                            controls shuffled (codes permuted across texts) and random
#                            (random unit anchors, codes kept); seeds 1-3
#   var-NAME-sSEED           the codes-only variants of ECR (tiny unless NAME says small):
#                            combined ablations, orth, rel, con, the lambda schedule, mres
#                            (multi-resolution codes, K = 64 and 1,024 beside the 256), mid
#                            (ECR on block 1's output too)
# Study "convergence" (issue: the method at convergence): the same students trained about
# 5 epochs instead of 1 (tiny 4,000 steps, small 3,000), validation every 1/8 of the run
# (loss, effective rank and P@1 over training):
#   conv-SIZE-METHOD-sSEED   SIZE tiny | small; METHOD none, ecr+orth (ECR with orth, the
#                            defaults then), feat, ecr+orth+rel (the best variant of the
#                            screening, ECR's defaults since); seeds 1-3
# Study "stress" (the same issue: does ECR stabilise training?): tiny students, 300 steps of
# 2,048 tokens, with the stabilisers taken away: no warm-up, no gradient clipping, and a
# constant learning rate (--min-lr = --lr) raised far above the default 1e-3. Only the
# training log is evaluated (ecr eval --log: spikes, grad-norm CV, final loss); no validation
# passes. First the probes, plain LM at three learning rates, to find where `none` blows up:
#   probe-lrLR-sSEED         none, LR 3e-2 | 1e-1 | 3e-1, seeds 1-2
# then the protocol at the learning rate the probes choose (EXP_STRESS_LR, default 1e-1):
#   stress-METHOD-sSEED      METHOD none, ecr (ECR alone), ecr+orth (ECR with orth),
#                            kd, ecr+orth+rel (ECR at today's defaults); seeds 1-5
# A diverged run (a non-finite loss stops training) counts as a divergence; its run.json is
# written by the runner with "diverged" and its log kept. scripts/stress_summary.py then
# writes results/stress/summary.md: blow-ups (the loss above ln(vocab) + 1, worse than a
# uniform guess), peak loss, spikes, grad-norm CV and the seed spread of the final loss.
# A finished run is results/STUDY/NAME/ (run.json, eval.json, eval.txt, the training
# log thinned to every 10th step plus all validation records; the stability metrics in
# eval.json come from the full log). A run whose folder exists is skipped, so committing
# results/ is what carries the experiment from one working session to the next; a run
# interrupted mid-training resumes from its checkpoint in build/exp/runs/NAME.
# Then, for main, `ecr report` over the main runs (docs/report-main/), over the variants plus
# the main tiny none, ecr and feat runs (docs/report-variants/) and over the ablations plus the
# main tiny none and ecr runs (docs/report-ablations/). Anchor agreement is measured against
# the anchors each run trained with (the shipped K = 256 ones for runs without ECR). For
# convergence, one report over its runs (docs/report-convergence/).
#
# Budget (env): EXP_TINY_STEPS, EXP_SMALL_STEPS (steps of 4,096 tokens; the study's by
# default), EXP_THREADS, EXP_PRECISION (fp32 by default, on every machine: the committed
# results are fp32, and --precision auto would pick bf16 where the CPU has it, so runs of one
# study would differ by machine; bf16 to measure that precision on purpose).
# Elsewhere (env, for trying the runner out): EXP_WORK (build/exp), EXP_RESULTS
# (results/experiment), EXP_REPORTS (docs: the reports go to EXP_REPORTS/report-*).
set -euo pipefail
cd "$(dirname "$0")/.."
ECR=${ECR_BIN:-build/ecr}
W=${EXP_WORK:-build/exp}
THREADS=${EXP_THREADS:-2}
PREC=${EXP_PRECISION:-fp32}
STUDY=main
ONLY=.
LIST=0
REPORT_ONLY=0
while [ $# -gt 0 ]; do
    case $1 in
    --study) STUDY=${2:?--study needs a NAME}; shift 2 ;;
    --only) ONLY=${2:?--only needs a REGEX}; shift 2 ;;
    --list) LIST=1; shift ;;
    --report-only) REPORT_ONLY=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "experiment: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
say() { printf '%s\n' "$*" >&2; }
# the study: its results folder, budget and validation passes per run
case $STUDY in
main) RES=${EXP_RESULTS:-results/experiment} TINY_STEPS=${EXP_TINY_STEPS:-1000} SMALL_STEPS=${EXP_SMALL_STEPS:-500}
    EVALS=6 ;;
convergence) RES=${EXP_RESULTS:-results/convergence} TINY_STEPS=${EXP_TINY_STEPS:-4000}
    SMALL_STEPS=${EXP_SMALL_STEPS:-3000} EVALS=8 ;;
stress) RES=${EXP_RESULTS:-results/stress} TINY_STEPS=${EXP_TINY_STEPS:-300} SMALL_STEPS=${EXP_SMALL_STEPS:-300}
    EVALS=0 ;;
*) say "experiment: unknown study '$STUDY' (main, convergence or stress)"; exit 2 ;;
esac

# ---- the plan: NAME PRESET SEED TAG FLAGS... (TAG "-" = none; FLAGS use the names below) ----
ANCH=teacher/anchors.safetensors
plan() { "plan_$STUDY"; }
plan_convergence() {
    local s m
    for size in tiny small; do  # seed by seed, so that a part compares the methods
        for s in 1 2 3; do
            for m in none ecr+orth feat; do echo "conv-$size-$m-s$s $size $s - $m"; done
            echo "conv-$size-ecr+orth+rel-s$s $size $s +rel(u,1) ecr+orth --rel-weight 1"
        done
    done
}
STRESS=(--warmup 0 --grad-clip 0 --tokens-per-step 2048)
plan_stress() {
    local s m lr
    for s in 1 2; do
        for lr in 3e-2 1e-1 3e-1; do echo "probe-lr$lr-s$s tiny $s lr=$lr none --lr $lr --min-lr $lr ${STRESS[*]}"; done
    done
    lr=${EXP_STRESS_LR:-1e-1}
    for s in 1 2 3 4 5; do
        for m in none ecr ecr+orth kd; do
            echo "stress-$m-s$s tiny $s stress-lr=$lr $m --lr $lr --min-lr $lr ${STRESS[*]}"
        done
        echo "stress-ecr+orth+rel-s$s tiny $s stress-lr=$lr ecr+orth --rel-weight 1 --lr $lr --min-lr $lr ${STRESS[*]}"
    done
}
plan_main() {
    local s m
    for size in tiny small; do
        for m in none kd feat rkd ecr ecr+kd; do
            for s in 1 2 3; do echo "main-$size-$m-s$s $size $s - $m"; done
        done
    done
    for s in 1 2 3; do
        echo "abl-k64-s$s tiny $s K=64 ecr@$W/anchors_k64.safetensors"
        echo "abl-k1024-s$s tiny $s K=1024 ecr@$W/anchors_k1024.safetensors"
        echo "abl-tau0.02-s$s tiny $s tau=0.02 ecr --ecr-tau 0.02"
        echo "abl-tau0.1-s$s tiny $s tau=0.1 ecr --ecr-tau 0.1"
        for l in 0.01 0.03 0.1 0.3; do echo "abl-lam$l-s$s tiny $s lambda=$l ecr --ecr-weight $l"; done
        echo "abl-soft-s$s tiny $s soft-codes ecr --ecr-soft"
        echo "abl-shuffled-s$s tiny $s control:shuffled-codes ecr@$W/anchors_shuffled.safetensors"
        echo "abl-random-s$s tiny $s control:random-anchors ecr@$W/anchors_random.safetensors"
    done
    # codes-only variants (issue: the method at convergence), tiny; each on top of ECR's
    # default, orth, except the K = 1,024, tau = 0.02 pair that measures it
    for s in 1 2 3; do
        echo "var-k1024-tau0.02-s$s tiny $s K=1024,tau=0.02 ecr@$W/anchors_k1024.safetensors --ecr-tau 0.02"
        echo "var-orth-s$s tiny $s +orth(1) ecr --orth-weight 1"
        echo "var-small-orth-s$s small $s +orth(1) ecr --orth-weight 1"
        echo "var-k1024-tau0.02-orth-s$s tiny $s K=1024,tau=0.02,+orth(1) ecr@$W/anchors_k1024.safetensors --ecr-tau 0.02 --orth-weight 1"
        echo "var-rel-h-s$s tiny $s +orth(1),+rel(h,1) ecr --orth-weight 1 --rel-weight 1 --rel-on-h"
        echo "var-con-h-s$s tiny $s +orth(1),+con(h,0.1) ecr --orth-weight 1 --con-weight 0.1 --con-on-h"
        echo "var-lam0.1-warmup-s$s tiny $s lambda=0.1,warm-up=0.5,+orth(1) ecr --orth-weight 1 --ecr-weight 0.1 --ecr-warmup 0.5"
        echo "var-k1024-tau0.02-lam0.1-s$s tiny $s K=1024,tau=0.02,lambda=0.1,+orth(1) ecr@$W/anchors_k1024.safetensors --orth-weight 1 --ecr-tau 0.02 --ecr-weight 0.1"
        echo "var-rel-u-s$s tiny $s +orth(1),+rel(u,1) ecr --orth-weight 1 --rel-weight 1"
        echo "var-small-rel-u-s$s small $s +orth(1),+rel(u,1) ecr --orth-weight 1 --rel-weight 1"
        echo "var-con-u-s$s tiny $s +orth(1),+con(u,0.1) ecr --orth-weight 1 --con-weight 0.1"
        echo "var-lam0.1-decay-s$s tiny $s lambda=0.1,decay=0.5,+orth(1) ecr --orth-weight 1 --ecr-weight 0.1 --ecr-decay 0.5"
        echo "var-mres-s$s tiny $s +orth(1),+mres(K=64,1024) ecr --orth-weight 1" \
            "--mres-anchors $W/anchors_k64.safetensors,$W/anchors_k1024.safetensors"
        echo "var-mres-w0.02-s$s tiny $s +orth(1),+mres(K=64,1024;0.02) ecr --orth-weight 1 --mres-weight 0.02" \
            "--mres-anchors $W/anchors_k64.safetensors,$W/anchors_k1024.safetensors"
        echo "var-mid-s$s tiny $s +orth(1),+mid(layer=1,0.05) ecr --orth-weight 1 --mid-weight 0.05 --mid-layer 1"
        echo "var-rel-mres-w0.02-s$s tiny $s +orth(1),+rel(u,1),+mres(K=64,1024;0.02) ecr --orth-weight 1 --rel-weight 1" \
            "--mres-weight 0.02 --mres-anchors $W/anchors_k64.safetensors,$W/anchors_k1024.safetensors"
    done
}

# flags METHOD [EXTRA...]: the training flags of a method (ecr@FILE: ECR with other anchors).
# ecr, ecr@FILE and ecr+kd are ECR as the main study ran it, without the orth and rel terms
# (which became part of ECR's defaults after it): --orth-weight 0 and --rel-weight 0 unless
# EXTRA sets them; ecr+orth is ECR with orth, as the defaults were before rel joined them
# (--rel-weight 0 unless EXTRA sets it).
flags() {
    local m=$1 orth="--orth-weight 0" rel="--rel-weight 0"
    shift
    case " $* " in *" --orth-weight "*) orth= ;; esac
    case " $* " in *" --rel-weight "*) rel= ;; esac
    case $m in
    none) ;;
    kd) echo "--kd teacher/model" ;;
    feat) echo "--feat $W/teacher_train.npy" ;;
    rkd) echo "--rkd $W/teacher_train.npy" ;;
    ecr) echo "--anchors $ANCH $orth $rel" ;;
    ecr@*) echo "--anchors ${m#ecr@} $orth $rel" ;;
    ecr+kd) echo "--anchors $ANCH --kd teacher/model $orth $rel" ;;
    ecr+orth) echo "--anchors $ANCH $rel" ;;
    *) echo "experiment: unknown method $m" >&2; return 2 ;;
    esac
    [ $# -eq 0 ] || echo "$@"
}

steps_of() { [ "$1" = tiny ] && echo "$TINY_STEPS" || echo "$SMALL_STEPS"; }

# Seconds per step of PRESET with or without a KD teacher pass: the median of the 3 newest
# finished runs of the same kind in results/ (older ones may come from a slower build or
# machine), else a first guess measured on the 2-core machine.
sec_per_step() {
    local preset=$1 kd=$2 f v=()
    while IFS= read -r f; do
        [ ${#v[@]} -lt 3 ] || break
        grep -q "\"preset\":[[:space:]]*\"$preset\"" "$f" || continue
        if grep -q '"kd":' "$f"; then [ "$kd" = 1 ] || continue; else [ "$kd" = 0 ] || continue; fi
        local d=${f%/run.json} last
        last=$(grep '"loss"' "$d/log.jsonl" | tail -1)
        v+=("$(echo "$last" | sed -E 's/.*"step":([0-9]+).*"elapsed_s":([0-9.]+).*/\2 \1/' | awk '{print $1/$2}')")
    done < <(for f in "$RES"/*/run.json; do [ -f "$f" ] && stat -c '%Y %n' "$f"; done | sort -rn | cut -d' ' -f2-)
    if [ ${#v[@]} -gt 0 ]; then
        printf '%s\n' "${v[@]}" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'
    else
        case $preset-$kd in tiny-0) echo 0.30 ;; tiny-1) echo 1.02 ;; small-0) echo 0.62 ;; *) echo 1.40 ;; esac
    fi
}

# ---- shared inputs (made when first needed, cached in build/exp/) --------------------------
setup() {
    mkdir -p "$W/runs" "$RES"
    [ -f teacher/model/model.safetensors ] && [ -f "$ANCH" ] ||
        { say "experiment: teacher/ is missing the shipped teacher (run make teacher)"; exit 2; }
    local set
    for set in train valid; do
        [ -f "$W/$set.safetensors" ] || "$ECR" prepare --data "build/data/lo10/$set.jsonl" \
            --tokenizer teacher/model/tokenizer.json --out "$W/$set.safetensors"
    done
    need "$W/teacher_valid.npy"
}

# need FILE: makes one of the derived inputs if it is missing.
need() {
    local f=$1
    [ -f "$f" ] && return 0
    case $f in
    */teacher_train.npy | */teacher_valid.npy)
        local set=${f##*/teacher_}
        set=${set%.npy}
        "$ECR" embed --model teacher/model --data "$W/$set.safetensors" --raw --threads "$THREADS" --precision "$PREC" --out "$f" ;;
    */anchors_k*.safetensors)
        local k=${f##*/anchors_k}
        need "$W/teacher_train.npy"
        "$ECR" anchors --emb "$W/teacher_train.npy" --data "$W/train.safetensors" --k "${k%.safetensors}" \
            --seed 1 --threads "$THREADS" --quiet --out "$f" ;;
    */anchors_shuffled.safetensors) "$ECR" anchors --control shuffle-codes --from "$ANCH" --seed 1 --out "$f" ;;
    */anchors_random.safetensors) "$ECR" anchors --control random-anchors --from "$ANCH" --seed 1 --out "$f" ;;
    *) say "experiment: do not know how to make $f"; exit 2 ;;
    esac
}

# run_one NAME PRESET SEED TAG METHOD [EXTRA...]
run_one() {
    local name=$1 preset=$2 seed=$3 tag=$4 method=$5
    shift 5
    local out=$W/runs/$name steps
    steps=$(steps_of "$preset")
    local args=(--data "$W/train.safetensors" --model "$preset" --steps "$steps" --seed "$seed"
        --threads "$THREADS" --precision "$PREC" --save-every 250 --log-every 100 --out "$out")
    [ "$EVALS" = 0 ] || args+=(--valid "$W/valid.safetensors" --eval-every $((steps / EVALS)))
    [ "$tag" = - ] || args+=(--tag "$tag")
    # shellcheck disable=SC2207
    args+=($(flags "$method" "$@"))
    local a
    for a in "${args[@]}"; do # comma-separated lists too (--mres-anchors)
        for f in ${a//,/ }; do case $f in "$W"/*.npy | "$W"/anchors_*) need "$f" ;; esac; done
    done
    local rc=0
    if [ -f "$out/run.json" ]; then
        say "experiment: $name: trained already"
    elif [ -f "$out/train_state.safetensors" ]; then
        "$ECR" train "${args[@]}" --resume 2> >(tee "$out.err" >&2) || rc=$?
    else
        rm -rf "$out"
        "$ECR" train "${args[@]}" 2> >(tee "$out.err" >&2) || rc=$?
    fi
    if [ $rc = 1 ] && [ "$STUDY" = stress ]; then # diverged: keep the log, say where
        local why
        why=$(grep -o 'step [0-9]*: [a-z ]* is [A-Za-z]*' "$out.err" | tail -1)
        local tmp=$RES/.$name.tmp
        rm -rf "$tmp"
        mkdir -p "$tmp"
        printf '{"preset": "%s", "method": "%s", "tag": "%s", "seed": %s, "steps": %s, "diverged": "%s"}\n' \
            "$preset" "$method" "$tag" "$seed" "$steps" "$why" >"$tmp/run.json"
        cp "$out/log.jsonl" "$tmp/"
        mv "$tmp" "$RES/$name"
        say "experiment: $name: diverged ($why)"
        return 0
    fi
    [ $rc = 0 ] || exit $rc
    local tmp=$RES/.$name.tmp
    rm -rf "$tmp"
    mkdir -p "$tmp"
    if [ "$STUDY" = stress ]; then # the training log is what is measured: kept whole
        "$ECR" eval --log "$out/log.jsonl" --quiet --json "$out/eval.json" >"$out/eval.txt"
        cp "$out/log.jsonl" "$tmp/"
    else
        # anchor agreement against the anchors the run trained with (the shipped ones otherwise)
        local anchors=$ANCH i
        for ((i = 0; i < ${#args[@]} - 1; i++)); do [ "${args[$i]}" = --anchors ] && anchors=${args[$((i + 1))]}; done
        "$ECR" eval --model "$out" --data "$W/valid.safetensors" --teacher-emb "$W/teacher_valid.npy" \
            --anchors "$anchors" --log "$out/log.jsonl" --threads "$THREADS" --precision "$PREC" --quiet --json "$out/eval.json" \
            >"$out/eval.txt"
        awk '/"val_loss"/ || /"step":[0-9]*0,/ {print}' "$out/log.jsonl" >"$tmp/log.jsonl"
    fi
    cp "$out/run.json" "$out/eval.json" "$out/eval.txt" "$out/config.json" "$tmp/"
    mv "$tmp" "$RES/$name"
}

# ---- main -----------------------------------------------------------------------------------
todo=()
total=0
while read -r name preset seed tag method extra; do
    echo "$name" | grep -Eq -- "$ONLY" || continue
    local_kd=0
    case $method in kd | *+kd) local_kd=1 ;; esac
    if [ -d "$RES/$name" ]; then
        [ $LIST = 1 ] && printf '  done  %s\n' "$name"
        continue
    fi
    sps=$(sec_per_step "$preset" $local_kd)
    est=$(awk -v a="$sps" -v b="$(steps_of "$preset")" 'BEGIN{printf "%d", a*b + 40}')
    total=$((total + est))
    todo+=("$name $preset $seed $tag $method $extra")
    [ $LIST = 1 ] && printf '  to do %-26s %5s s\n' "$name" "$est"
done < <(plan)
say "experiment: ${#todo[@]} runs to do (filter '$ONLY'), about $((total / 60)) min on this machine" \
    "($TINY_STEPS tiny / $SMALL_STEPS small steps of $([ "$STUDY" = stress ] && echo 2,048 || echo 4,096) tokens," \
    "$THREADS threads)"
[ $LIST = 1 ] && exit 0

if [ $REPORT_ONLY = 0 ] && [ ${#todo[@]} -gt 0 ]; then
    setup
    i=0
    t0=$SECONDS
    for r in "${todo[@]}"; do
        i=$((i + 1))
        say ""
        say "== experiment: run $i/${#todo[@]}: $r (elapsed $(((SECONDS - t0) / 60)) min)"
        # shellcheck disable=SC2086
        run_one $r
    done
fi

report() { # report OUT TITLE RUN_DIRS...
    local out=$1 title=$2
    shift 2
    [ $# -gt 0 ] || return 0
    "$ECR" report "$@" --title "$title" --out "$out"
}
shopt -s nullglob
if [ "$STUDY" = convergence ]; then
    conv=("$RES"/conv-*)
    report "${EXP_REPORTS:-docs}/report-convergence" "lo10: methods trained about 5 epochs" "${conv[@]}"
    exit 0
fi
if [ "$STUDY" = stress ]; then
    stress=("$RES"/probe-* "$RES"/stress-*)
    report "${EXP_REPORTS:-docs}/report-stress" "lo10: training without warm-up or clipping (tiny)" "${stress[@]}"
    [ ${#stress[@]} -eq 0 ] || { python3 scripts/stress_summary.py "$RES" >"$RES/summary.md.tmp" &&
        mv "$RES/summary.md.tmp" "$RES/summary.md"; }
    exit 0
fi
main=("$RES"/main-*)
abl=("$RES"/abl-*)
var=("$RES"/var-*)
[ ${#var[@]} -eq 0 ] || var+=("$RES"/main-*-none-* "$RES"/main-*-ecr-s* "$RES"/main-*-feat-*)
[ ${#abl[@]} -eq 0 ] || abl+=("$RES"/main-tiny-none-* "$RES"/main-tiny-ecr-s*)  # the references
report "${EXP_REPORTS:-docs}/report-main" "lo10: methods by student size" "${main[@]}"
report "${EXP_REPORTS:-docs}/report-ablations" "lo10: ECR ablations (tiny)" "${abl[@]}"
report "${EXP_REPORTS:-docs}/report-variants" "lo10: codes-only ECR variants against feat (tiny)" "${var[@]}"
