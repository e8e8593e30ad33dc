#!/usr/bin/env bash
# cli_train.sh — `ecr train`, `ecr generate`, `ecr eval` from the command line: exit codes,
# messages, and a tiny end-to-end run whose folder generate and eval then use.
set -u
. "$(dirname "$0")/cli_lib.sh"


# ---- usage and bad input -----------------------------------------------------------------
for c in train generate eval; do
    expect 0 "$c --help" -- "$ECR" $c --help
    has "$T/out" "usage: ecr $c" "$c --help prints usage on stdout"
done
expect 2 "train without --data" -- "$ECR" train --model tiny --out "$T/m"
has "$T/err" "--data" "missing --data is named"
expect 2 "train with an unknown flag" -- "$ECR" train --data x --model tiny --out "$T/m" --no-such-flag lm
expect 2 "train with --steps and --epochs" -- "$ECR" train --data x --model tiny --out "$T/m" --steps 2 --epochs 1
printf 'this is not safetensors at all' >"$T/garbage.safetensors"
expect 2 "train on a garbage file" -- "$ECR" train --data "$T/garbage.safetensors" --model tiny --out "$T/m"
has "$T/err" "garbage.safetensors" "the bad file is named"
expect 1 "train on a missing file" -- "$ECR" train --data "$T/missing.safetensors" --model tiny --out "$T/m"
has "$T/err" "missing.safetensors" "the missing file is named"
expect 2 "train with an unknown preset" -- "$ECR" train --data "$T/garbage.safetensors" --model huge --out "$T/m"
expect 2 "generate without --prompt" -- "$ECR" generate --model "$T/m"
expect 2 "eval without --data" -- "$ECR" eval --model "$T/m"

# ---- a tiny end-to-end run ---------------------------------------------------------------
VALID="$ROOT/build/data/lo10/valid.jsonl"
if [ ! -f "$VALID" ]; then
    bad "missing $VALID (make data)"
else
    head -n 300 "$VALID" >"$T/small.jsonl"
    expect 0 "tokenizer train" -- "$ECR" tokenizer train --data "$T/small.jsonl" --vocab-size 320 --out "$T/tok.json" --quiet
    expect 0 "prepare" -- "$ECR" prepare --data "$T/small.jsonl" --tokenizer "$T/tok.json" --out "$T/small.safetensors" --quiet
    SET=(--set dim=32 --set n_layers=1 --set n_heads=2 --set hidden_dim=64 --set max_seq_len=64)
    expect 2 "train with a conflicting vocab_size" -- "$ECR" train --data "$T/small.safetensors" --model tiny \
        "${SET[@]}" --set vocab_size=8192 --steps 2 --out "$T/v" --quiet
    has "$T/err" "vocab" "the conflict names the vocabulary"
    expect 0 "train" -- "$ECR" train --data "$T/small.safetensors" --valid "$T/small.safetensors" --model tiny \
        "${SET[@]}" --steps 12 --tokens-per-step 256 --lr 3e-3 --warmup 2 --log-every 4 --threads 2 --out "$T/m"
    has "$T/err" "step 12/12" "progress reaches the last step"
    has "$T/err" "tok/s" "progress shows tokens/s"
    for f in config.json model.safetensors tokenizer.json train_state.safetensors log.jsonl; do
        if [ -s "$T/m/$f" ]; then ok; else bad "train did not write $f"; fi
    done
    if [ "$(grep -c '"loss"' "$T/m/log.jsonl")" = 12 ]; then ok; else bad "log.jsonl: not 12 step records"; fi
    has "$T/m/log.jsonl" '"val_bpb"' "log.jsonl has the validation record"
    has "$T/m/log.jsonl" '"val_eff_rank":' "the validation record has the effective rank of h"
    has "$T/m/log.jsonl" '"val_p1":' "the validation record has P@1 on h"
    # the last validation record's P@1 and label transfer are ecr eval's on the same texts
    expect 0 "eval the trained model" -- "$ECR" eval --model "$T/m" --data "$T/small.safetensors" --quiet \
        --json "$T/m_eval.json"
    vp1=$(grep '"val_p1"' "$T/m/log.jsonl" | tail -1 | sed -E 's/.*"val_p1":([^,}]*).*/\1/')
    vtr=$(grep '"val_transfer"' "$T/m/log.jsonl" | tail -1 | sed -E 's/.*"val_transfer":([^,}]*).*/\1/')
    hjson=$(tr -d ' \n\t' <"$T/m_eval.json" | sed -E 's/.*"geometry":\{//; s/.*"h":\{//; s/"u":\{.*//')
    ep1=$(echo "$hjson" | sed -E 's/.*"p1":\{"mean":([^,}]*).*/\1/')
    etr=$(echo "$hjson" | sed -E 's/.*"label_transfer":\{"mean":([^,}]*).*/\1/')
    if awk -v a="$vp1" -v b="$ep1" -v c="$vtr" -v d="$etr" 'BEGIN { exit !(a != "" && c != "" &&
        (a - b) ^ 2 < 1e-12 && (c - d) ^ 2 < 1e-12) }'; then ok
    else bad "val_p1 $vp1 / val_transfer $vtr differ from ecr eval's P@1 $ep1 / transfer $etr"; fi
    has "$T/m/run.json" '"method":[[:space:]]*"none"' "run.json names the method"
    has "$T/m/run.json" '"preset":[[:space:]]*"tiny"' "run.json names the preset"
    has "$T/m/run.json" '"tag":[[:space:]]*null' "run.json: no tag given"
    if ls "$T/m" | grep -q '\.tmp'; then bad "temporary files left in the model folder"; else ok; fi
    expect 2 "a second fresh run into the same folder" -- "$ECR" train --data "$T/small.safetensors" --model tiny \
        "${SET[@]}" --steps 12 --tokens-per-step 256 --out "$T/m" --quiet
    expect 0 "resume to 16 steps" -- "$ECR" train --data "$T/small.safetensors" --model tiny \
        "${SET[@]}" --steps 16 --tokens-per-step 256 --lr 3e-3 --warmup 2 --threads 2 --out "$T/m" --resume --quiet
    if [ "$(grep -c '"loss"' "$T/m/log.jsonl")" = 16 ]; then ok; else bad "log.jsonl after resume: not 16 step records"; fi

    # a diverging run stops with exit 1, names the step, keeps its last checkpoint
    expect 1 "diverging run" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SET[@]}" \
        --steps 10 --tokens-per-step 256 --lr 1e30 --warmup 0 --grad-clip 0 --save-every 1 --out "$T/nan" --quiet
    has "$T/err" "^ecr: step [0-9]*: \(loss\|gradient norm\) is \(NaN\|infinite\); last good checkpoint at step [0-9]* kept" \
        "the divergence message names the step and the checkpoint"
    if [ -s "$T/nan/train_state.safetensors" ] && [ -s "$T/nan/model.safetensors" ]; then ok; else
        bad "the last checkpoint of the diverged run is missing"; fi

    # --precision: bad values, bf16 where it cannot run, and bf16 on the reference engine
    expect 2 "train --precision fp16" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SET[@]}" \
        --steps 2 --out "$T/p16" --precision fp16
    has "$T/err" "expected auto, bf16 or fp32, got 'fp16'" "a bad precision is named"
    for c in embed eval generate; do
        expect 2 "$c --precision half" -- "$ECR" $c --model "$T/m" --data "$T/small.safetensors" --out "$T/x.npy" \
            --prompt x --precision half
    done
    "$ECR" --version >"$T/version" 2>&1
    has "$T/version" "^--precision auto: \(bf16\|fp32\)$" "ecr --version says what auto means here"
    if grep -q '^bf16: none' "$T/version"; then
        expect 2 "train --precision bf16 without a bf16 engine" -- env -u ECR_BF16_EMULATE "$ECR" train \
            --data "$T/small.safetensors" --model tiny "${SET[@]}" --steps 2 --out "$T/pbf" --precision bf16
        has "$T/err" "^ecr: --precision bf16: .*; use --precision fp32 or auto$" "the refusal says why, in one line"
        if [ -e "$T/pbf" ]; then bad "the refused bf16 run created its folder"; else ok; fi
    fi
    expect 0 "train --precision bf16 (reference engine)" -- env ECR_BF16_EMULATE=1 "$ECR" train \
        --data "$T/small.safetensors" --model tiny "${SET[@]}" --steps 4 --tokens-per-step 256 --out "$T/bf" \
        --precision bf16
    has "$T/err" "^train: precision bf16, " "the run says its precision and engine"
    has "$T/bf/run.json" '"precision":[[:space:]]*"bf16"' "run.json records the precision"
    if [ "$(grep -c '"precision":"bf16"' "$T/bf/log.jsonl")" = 4 ]; then ok; else bad "log.jsonl: not 4 bf16 step records"; fi
    expect 2 "resume a bf16 run in fp32" -- env ECR_BF16_EMULATE=1 "$ECR" train --data "$T/small.safetensors" \
        --model tiny "${SET[@]}" --steps 6 --tokens-per-step 256 --out "$T/bf" --precision fp32 --resume
    has "$T/err" "option 'precision' was bf16 in the checkpoint, now off" "the precision mismatch is named"
    expect 0 "embed --precision bf16 (reference engine)" -- env ECR_BF16_EMULATE=1 "$ECR" embed --model "$T/bf" \
        --data "$T/small.safetensors" --out "$T/bf.npy" --precision bf16
    has "$T/err" "^embed: precision bf16, " "embed says its precision"
    expect 0 "generate --precision fp32" -- "$ECR" generate --model "$T/m" --prompt "The " --max-tokens 5 --precision fp32
    has "$T/err" "^generate: precision fp32$" "generate says its precision"

    expect 0 "generate" -- "$ECR" generate --model "$T/m" --prompt "The " --max-tokens 20 --seed 3
    has "$T/out" "^The " "generate echoes the prompt"
    has "$T/err" "tokens/s prefill); .* tokens/s decode)" "generate reports prefill and decode tokens/s"
    expect 0 "generate --ignore-eot" -- "$ECR" generate --model "$T/m" --prompt "The " --max-tokens 40 --ignore-eot
    has "$T/err" "; 40 new tokens, 39 decode steps" "--ignore-eot generates exactly --max-tokens tokens"
    "$ECR" generate --model "$T/m" --prompt "The " --max-tokens 20 --temperature 0 --quiet >"$T/g1" 2>&1
    "$ECR" generate --model "$T/m" --prompt "The " --max-tokens 20 --temperature 0 --quiet >"$T/g2" 2>&1
    if cmp -s "$T/g1" "$T/g2"; then ok; else bad "greedy generation is not deterministic"; fi

    expect 0 "eval" -- "$ECR" eval --model "$T/m" --data "$T/small.safetensors" --json "$T/metrics.json" --quiet
    has "$T/out" "bits/byte" "eval prints a table"
    has "$T/out" "^all " "eval prints the overall row"
    has "$T/out" "^en " "eval prints a row per language"
    python3 - "$T/metrics.json" <<'EOF' && ok || bad "metrics.json schema"
import json, math, sys
m = json.load(open(sys.argv[1]))
lm = m["lm"]
o = lm["overall"]
assert set(o) >= {"loss", "ppl", "bpb", "tokens", "bytes", "texts"}, o
assert o["texts"] == 300, o
assert abs(o["ppl"] - math.exp(o["loss"])) < 1e-6 * o["ppl"]
assert abs(o["bpb"] - o["loss"] * o["tokens"] / math.log(2) / o["bytes"]) < 1e-9
assert sum(v["texts"] for v in lm["per_lang"].values()) == 300
assert "en" in lm["per_lang"] and m["model"] and m["data"]
EOF
    expect 2 "eval on a garbage file" -- "$ECR" eval --model "$T/m" --data "$T/garbage.safetensors"
fi

cli_done
