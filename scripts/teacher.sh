#!/usr/bin/env bash
# teacher.sh — `make teacher`: the reference ("teacher") model for lo10 and its anchors.
#
#   1. tokenizer (8,192 BPE tokens) and prepared train/valid data, as in the demo
#   2. train the teacher: preset `base` (6 x 384, larger than the students), objective
#      lm+contrastive (LM + symmetric InfoNCE between translations, tau 0.05, pairs of
#      languages per group), TEACHER_STEPS steps of 4,096 tokens, 2 threads, seed 1;
#      checkpoints every 200 steps, and a rerun resumes where it stopped
#   3. embed lo10 train and valid with the teacher (pooled h, 384 dims)
#   4. anchors: spherical k-means, K = 256, on the train embeddings (also soft top-8)
#   5. evaluate the teacher on lo10 valid (LM and geometry when the metrics exist)
#   6. ship into teacher/: anchors.safetensors, the weights as BF16 (model/), the
#      training log and the evaluation
# Deterministic for a given thread count. Work files are in build/teacher/.
set -euo pipefail
cd "$(dirname "$0")/.."
ECR=${ECR_BIN:-build/ecr}
W=build/teacher
SHIP=teacher
STEPS=${TEACHER_STEPS:-3200}
THREADS=${TEACHER_THREADS:-2}
mkdir -p "$W" "$SHIP"
step() { printf '\n== %s\n' "$*" >&2; }

step "1/6 tokenizer and prepared data"
[ -f "$W/tokenizer.json" ] || "$ECR" tokenizer train --data build/data/lo10/train.jsonl --vocab-size 8192 --out "$W/tokenizer.json"
[ -f "$W/train.safetensors" ] || "$ECR" prepare --data build/data/lo10/train.jsonl --tokenizer "$W/tokenizer.json" --out "$W/train.safetensors"
[ -f "$W/valid.safetensors" ] || "$ECR" prepare --data build/data/lo10/valid.jsonl --tokenizer "$W/tokenizer.json" --out "$W/valid.safetensors"

step "2/6 train the teacher: base, lm+contrastive, $STEPS steps"
args=(--data "$W/train.safetensors" --valid "$W/valid.safetensors" --model base
      --objective lm+contrastive --contrastive-weight 0.5 --contrastive-tau 0.05 --group-size 2
      --steps "$STEPS" --lr 1e-3 --seed 1 --threads "$THREADS"
      --save-every 200 --eval-every 400 --log-every 20 --out "$W/model")
if [ -f "$W/model/train_state.safetensors" ]; then
    "$ECR" train "${args[@]}" --resume
else
    "$ECR" train "${args[@]}"
fi

step "3/6 embed lo10 train and valid"
"$ECR" embed --model "$W/model" --data "$W/train.safetensors" --raw --threads "$THREADS" --out "$W/teacher_train.npy"
"$ECR" embed --model "$W/model" --data "$W/valid.safetensors" --raw --threads "$THREADS" --out "$W/teacher_valid.npy"

step "4/6 anchors: K = 256, soft top-8"
"$ECR" anchors --emb "$W/teacher_train.npy" --data "$W/train.safetensors" --k 256 --soft 8 --seed 1 \
    --threads "$THREADS" --out "$W/anchors.safetensors"

step "5/6 evaluate the teacher on lo10 valid"
eval_args=(--model "$W/model" --data "$W/valid.safetensors" --threads "$THREADS" --json "$W/eval.json")
if "$ECR" eval --help | grep -q -- '--teacher-emb'; then
    eval_args+=(--teacher-emb "$W/teacher_valid.npy" --anchors "$W/anchors.safetensors")
fi
"$ECR" eval "${eval_args[@]}" | tee "$W/eval.txt"

step "6/6 ship into $SHIP/"
rm -rf "$W/model-bf16"
"$ECR" convert --model "$W/model" --dtype bf16 --out "$W/model-bf16"
rm -rf "$SHIP/model"
mkdir -p "$SHIP/model"
cp "$W/model-bf16/config.json" "$W/model-bf16/model.safetensors" "$W/model-bf16/tokenizer.json" "$SHIP/model/"
cp "$W/anchors.safetensors" "$W/eval.json" "$W/eval.txt" "$SHIP/"
cp "$W/model/log.jsonl" "$SHIP/train_log.jsonl"
printf '\nteacher: done; shipped files are in %s/\n' "$SHIP" >&2
