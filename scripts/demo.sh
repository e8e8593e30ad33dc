#!/usr/bin/env bash
# demo.sh — `make demo`: the pipeline end to end on the bundled lo10 corpus.
#   1. a byte-level BPE tokenizer (8,192 tokens) from the 100K training texts
#   2. prepared training and validation data
#   3. a compact language model (`tiny`, 2 layers x 128) trained for DEMO_STEPS steps
#   4. its bits per byte per language on lo10 validation
#   5. a few generated samples in three languages
# Everything lands in build/demo/. Progress is shown on stderr throughout.
set -euo pipefail
cd "$(dirname "$0")/.."
ECR=${ECR_BIN:-build/ecr}
OUT=build/demo
STEPS=${DEMO_STEPS:-400}
MODEL=${DEMO_MODEL:-tiny}
mkdir -p "$OUT"

step() { printf '\n== %s\n' "$*" >&2; }

step "1/5 tokenizer: byte-level BPE, 8192 tokens, on build/data/lo10/train.jsonl"
"$ECR" tokenizer train --data build/data/lo10/train.jsonl --vocab-size 8192 --out "$OUT/tokenizer.json"

step "2/5 prepare: token ids and per-text metadata"
"$ECR" prepare --data build/data/lo10/train.jsonl --tokenizer "$OUT/tokenizer.json" --out "$OUT/train.safetensors"
"$ECR" prepare --data build/data/lo10/valid.jsonl --tokenizer "$OUT/tokenizer.json" --out "$OUT/valid.safetensors"

step "3/5 train: $MODEL model, $STEPS steps of 4096 tokens"
rm -rf "$OUT/model"
"$ECR" train --data "$OUT/train.safetensors" --valid "$OUT/valid.safetensors" --model "$MODEL" \
    --steps "$STEPS" --seed 1 --out "$OUT/model"

step "4/5 eval on lo10 validation"
"$ECR" eval --model "$OUT/model" --data "$OUT/valid.safetensors" --json "$OUT/metrics.json"

step "5/5 generate"
for prompt in "To insert a table, choose" "Wählen Sie" "Выберите"; do
    "$ECR" generate --model "$OUT/model" --prompt "$prompt" --max-tokens 40 --temperature 0.7 --seed 1
done
printf '\ndemo: done; model, metrics and data are in %s/\n' "$OUT" >&2
