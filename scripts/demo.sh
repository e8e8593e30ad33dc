#!/usr/bin/env bash
# demo.sh — `make demo`: ECR against no ECR on the bundled lo10 corpus, end to end.
#   1. prepared training and validation data (the shipped teacher's tokenizer, 8,192 tokens)
#   2. the teacher's embeddings of the validation texts (only to score the students: the
#      teacher-side metrics and anchor agreement; training never reads the teacher)
#   3. two compact students (`tiny`, 2 layers x 128), same seed, data and steps: plain LM
#      training, and LM + ECR at its defaults (lambda 0.05, tau 0.05, the rel and orth
#      terms on, method "ecr+rel+orth") with the shipped anchors
#      (teacher/anchors.safetensors: K = 256 anchors and a 2-byte code per training text)
#   4. both evaluated on lo10 validation (ecr eval)
#   5. the two side by side (ecr report), and a sample from the ECR student
# Everything lands in build/demo/. Progress is shown on stderr throughout.
# DEMO_STEPS (default 600) sets the steps of 4,096 tokens per student.
set -euo pipefail
cd "$(dirname "$0")/.."
ECR=${ECR_BIN:-build/ecr}
OUT=build/demo
STEPS=${DEMO_STEPS:-600}
THREADS=${DEMO_THREADS:-2}
TEACHER=teacher/model
ANCHORS=teacher/anchors.safetensors
mkdir -p "$OUT"
t0=$SECONDS
step() { printf '\n== [%dm%02ds] %s\n' $(((SECONDS - t0) / 60)) $(((SECONDS - t0) % 60)) "$*" >&2; }

step "1/5 prepare lo10 train and valid with the teacher's tokenizer"
"$ECR" prepare --data build/data/lo10/train.jsonl --tokenizer "$TEACHER/tokenizer.json" --out "$OUT/train.safetensors"
"$ECR" prepare --data build/data/lo10/valid.jsonl --tokenizer "$TEACHER/tokenizer.json" --out "$OUT/valid.safetensors"

step "2/5 teacher embeddings of the validation texts (for scoring only)"
"$ECR" embed --model "$TEACHER" --data "$OUT/valid.safetensors" --raw --threads "$THREADS" --out "$OUT/teacher_valid.npy"

for run in none ecr; do
    flags=()
    [ $run = ecr ] && flags=(--anchors "$ANCHORS")
    step "3/5 train the tiny student, $run: $STEPS steps of 4096 tokens"
    rm -rf "${OUT:?}/$run"
    "$ECR" train --data "$OUT/train.safetensors" --valid "$OUT/valid.safetensors" --model tiny \
        --steps "$STEPS" --seed 1 --threads "$THREADS" --eval-every $((STEPS / 3)) --log-every 50 \
        "${flags[@]}" --out "$OUT/$run"
    step "4/5 evaluate the $run student on lo10 validation"
    "$ECR" eval --model "$OUT/$run" --data "$OUT/valid.safetensors" --teacher-emb "$OUT/teacher_valid.npy" \
        --anchors "$ANCHORS" --log "$OUT/$run/log.jsonl" --threads "$THREADS" --quiet \
        --json "$OUT/$run/eval.json" >"$OUT/$run/eval.txt"
done

step "5/5 side by side"
"$ECR" report "$OUT/none" "$OUT/ecr" --title "make demo: tiny student, no ECR vs ECR" --out "$OUT/report" --quiet >/dev/null
# the report's three summary tables (LM and stability, geometry of h, geometry of u)
awk '/^## Cross-lingual/ {exit} /^## (Language|Geometry)/ {on = 1; print ""; print substr($0, 4)} on && /^\|/' \
    "$OUT/report/report.md"
echo
echo "Per language: build/demo/none/eval.txt and build/demo/ecr/eval.txt; plots in $OUT/report/."
echo "A sample from the ECR student (generation does not use the projection):"
"$ECR" generate --model "$OUT/ecr" --prompt "Wählen Sie" --max-tokens 30 --temperature 0.7 --seed 1
printf '\ndemo: done in %dm%02ds; models, metrics and the report are in %s/\n' \
    $(((SECONDS - t0) / 60)) $(((SECONDS - t0) % 60)) "$OUT" >&2
