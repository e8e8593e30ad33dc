#!/usr/bin/env bash
# cli_convert.sh — `ecr convert`: a bf16 copy of a model is half the size, loads, and
# evaluates to nearly the same loss; bad dtypes and missing folders are refused.
set -u
. "$(dirname "$0")/cli_lib.sh"

head -300 build/data/lo10/valid.jsonl >"$T/c.jsonl"
"$ECR_BIN" tokenizer train --data "$T/c.jsonl" --vocab-size 400 --out "$T/tok.json" --quiet &&
"$ECR_BIN" prepare --data "$T/c.jsonl" --tokenizer "$T/tok.json" --out "$T/d.st" --quiet &&
"$ECR_BIN" train --data "$T/d.st" --model tiny --set n_layers=1 --steps 3 --tokens-per-step 1024 \
    --threads 1 --quiet --out "$T/m" || bad "setup failed"

"$ECR_BIN" convert --model "$T/m" --dtype bf16 --out "$T/m16" 2>"$T/err" && ok || bad "convert: $(cat "$T/err")"
s32=$(stat -c %s "$T/m/model.safetensors"); s16=$(stat -c %s "$T/m16/model.safetensors")
[ $((s16 * 2)) -le $((s32 + 4096)) ] && [ $((s16 * 2)) -ge $((s32 - 65536)) ] && ok || bad "sizes $s32 -> $s16"
"$ECR_BIN" inspect "$T/m16/model.safetensors" | grep -q 'BF16' && ok || bad "no BF16 tensors"
[ -f "$T/m16/config.json" ] && [ -f "$T/m16/tokenizer.json" ] && ok || bad "folder incomplete"
l32=$("$ECR_BIN" eval --model "$T/m" --data "$T/d.st" --threads 1 --quiet | awk '$1=="all"{print $5}')
l16=$("$ECR_BIN" eval --model "$T/m16" --data "$T/d.st" --threads 1 --quiet | awk '$1=="all"{print $5}')
awk -v a="$l32" -v b="$l16" 'BEGIN{d=a-b; if(d<0)d=-d; exit !(a>0 && d < 0.01*a)}' && ok || bad "loss f32 $l32 vs bf16 $l16"
"$ECR_BIN" convert --model "$T/m" --dtype f64 --out "$T/x" 2>"$T/err"; rc=$?
[ $rc -eq 2 ] && grep -q "expected bf16, f16 or f32" "$T/err" && [ ! -e "$T/x" ] && ok || bad "bad dtype: exit $rc"
"$ECR_BIN" convert --model "$T/nope" --dtype bf16 --out "$T/y" 2>"$T/err"; rc=$?
[ $rc -ne 0 ] && grep -q "nope" "$T/err" && ok || bad "missing model: exit $rc $(cat "$T/err")"
"$ECR_BIN" convert --help | grep -q 'usage: ecr convert' && ok || bad "--help"

cli_done
