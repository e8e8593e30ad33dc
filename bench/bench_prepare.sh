#!/usr/bin/env bash
# bench_prepare.sh — `ecr prepare` on the 100K lo10 training texts (requirement: <= 10 s),
# beside its peer in the same run: Hugging Face's JavaScript tokenizer encoding the same
# texts from the same tokenizer.json (when node and tests/interop/node_modules exist).
set -eu
ECR_BIN=${ECR_BIN:-build/ecr}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
TRAIN=build/data/lo10/train.jsonl
"$ECR_BIN" tokenizer train --data "$TRAIN" --vocab-size 8192 --out "$T/tok.json" --quiet
t0=$(date +%s.%N)
"$ECR_BIN" prepare --data "$TRAIN" --tokenizer "$T/tok.json" --out "$T/train.safetensors" --quiet
t1=$(date +%s.%N)
ecr_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')
printf 'bench_prepare: ecr prepare, 100,000 texts: %.2f s (requirement <= 10 s): %s\n' "$ecr_s" \
    "$(awk -v s="$ecr_s" 'BEGIN{print (s <= 10) ? "PASS" : "FAIL"}')"
if command -v node >/dev/null && [ -d tests/interop/node_modules ]; then
    node -e 'const fs=require("fs");for(const l of fs.readFileSync(process.argv[1],"utf8").split("\n"))if(l)console.log(JSON.parse(l).text)' \
        "$TRAIN" >"$T/lines.txt"
    t0=$(date +%s.%N)
    node tests/interop/encode.mjs "$T/tok.json" <"$T/lines.txt" >/dev/null
    t1=$(date +%s.%N)
    js_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')
    printf 'bench_prepare: peer, HF JS tokenizer encoding the same texts: %.2f s; ecr prepare is %.1fx faster\n' \
        "$js_s" "$(awk -v a="$js_s" -v b="$ecr_s" 'BEGIN{print a/b}')"
else
    echo "bench_prepare: peer skipped (node or tests/interop/node_modules missing)"
fi
awk -v s="$ecr_s" 'BEGIN{exit !(s <= 10)}'
