#!/usr/bin/env bash
# bench_embed.sh — embedding throughput of `ecr embed` against PyTorch 1.13 running the same
# forward pass on the same token ids, in one run, with a check that both give the same rows.
#
# Model: the shipped `base` teacher (teacher/model: 6 x 384 Llama, vocabulary 8,192, tied
# embeddings, BF16 weights widened to fp32 by both). Data: the first TEXTS lo10 validation
# texts (build/data/lo10/valid.jsonl; all 10,000 take ecr two minutes a run on one core),
# prepared once with the teacher's tokenizer (`ecr prepare`); PyTorch reads the token ids
# from that same prepared file.
#
# What is timed: the pooled hidden state h of every text (`ecr embed --raw --precision fp32`:
# the mean of the final-norm output over the text's tokens, after the opening EOT; texts
# longer than 255 tokens cut to their first 255, none are in lo10), the model loaded, the
# data read. ecr: the time `ecr embed` prints on stderr. PyTorch: bench/torch_embed.py, a
# minimal Llama forward in plain torch (no transformers library; RMSNorm, rotate_half rope,
# SwiGLU, q/k/v and gate/up as one product each, as ecr stores them) under
# torch.inference_mode(), timed around all the batches' forwards and pooling, the batches
# built beforehand. Batching (TORCH_BATCHING, both by default): `packed` replicates ecr's
# packer, so PyTorch computes the very same slots: 16 rows of 256 a pass, several texts a
# row, attention causal inside each text through a boolean mask over the whole row (torch
# 1.13 has no fused attention; ecr's attention stays inside each text); `padded` sorts the
# texts by length and pads each batch of up to 4,096 slots to its longest, the usual Hugging
# Face way, with less attention work: the stronger of the two here. PyTorch runs with glibc
# malloc told to keep freed memory (MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_): its
# fresh 25 MB attention tensors otherwise page-fault in every layer (15% of its time here);
# ecr reuses its workspace anyway. And LD_LIBRARY_PATH picks OpenBLAS's OpenMP build (the
# library ecr links), so its threads do not fight torch's.
#
# Each measurement: best of REPS runs (texts/s = TEXTS / seconds), at 1 and 2 threads
# (--threads N; torch.set_num_threads(N)). ecr's runs are separate processes, each paying
# its first batch's allocation (embed keeps every layer's activations, ~600 MB for 4,096
# slots of base); PyTorch's are passes of one process, the best one warm, which favours
# PyTorch on short runs. The check: PyTorch's fp32 rows against ecr's of
# the same thread count, max |difference| and the smallest cosine; the line says `same`
# when the cosine is >= 0.9999 for every text and max |difference| <= 1e-3 (the rows are
# of size ~1: this is fp32 rounding, not another model), else MISMATCH (and the script
# fails). bf16: PyTorch's autocast (products in bf16, the usual CPU mixed precision) is
# timed once on the first BF16_TEXTS texts, padded, at the first thread count; on CPUs
# without native bf16 (AVX2) it is tens of times slower than fp32: reported, not compared
# (ecr's bf16 needs AMX-BF16 or AVX512-BF16, `ecr --version`). Run-to-run spread on a
# shared 2-core VM is 10-15%: a ratio near 1.0x is a tie.
#
# Env: ECR_BIN (default build/ecr), BENCH_REPS (3), EMBED_TEXTS (1000), BENCH_THREADS
# ("1 2"), TORCH_BATCHING ("packed padded"), EMBED_BF16_TEXTS (16; 0 skips bf16). Needs
# python3 with torch and numpy (/usr/bin/python3 first) for the PyTorch side: SKIP without
# them. About three minutes with the defaults on 2 idle cores.
set -eu
ECR_BIN=${ECR_BIN:-build/ecr}
case "$ECR_BIN" in /*) ;; *) ECR_BIN="$PWD/$ECR_BIN" ;; esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPS=${BENCH_REPS:-3}
NTEXTS=${EMBED_TEXTS:-1000}
THREADS=${BENCH_THREADS:-1 2}
BATCHING=${TORCH_BATCHING:-packed padded}
BF16_TEXTS=${EMBED_BF16_TEXTS:-16}
MODEL=$ROOT/teacher/model
VALID=$ROOT/build/data/lo10/valid.jsonl
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

if [ ! -f "$VALID" ]; then
    echo "bench_embed: SKIP ($VALID missing: make data)"
    exit 0
fi
head -n "$NTEXTS" "$VALID" >"$T/valid.jsonl"
NTEXTS=$(wc -l <"$T/valid.jsonl")
"$ECR_BIN" prepare --data "$T/valid.jsonl" --tokenizer "$MODEL/tokenizer.json" --out "$T/valid.st" --quiet

PY=""
for p in /usr/bin/python3 python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import numpy, torch' 2>/dev/null; then PY=$p; break; fi
done
torch_embed() { # threads reps precision batching [ecr h.npy]: one JSON line
    LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
        MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 \
        "$PY" "$ROOT/bench/torch_embed.py" "$MODEL" "$T/valid.st" "$NTEXTS" "$@"
}
best_of() { # threads: best texts/s of REPS `ecr embed` runs; h in $T/h$1.npy
    local best=0 r tps
    for r in $(seq "$REPS"); do
        "$ECR_BIN" embed --model "$MODEL" --data "$T/valid.st" --raw --precision fp32 --threads "$1" \
            --out "$T/h$1.npy" 2>"$T/embed.err" >/dev/null
        tps=$(sed -n 's/.* in \([0-9.]*\) s, .*/\1/p' "$T/embed.err" | awk -v n="$NTEXTS" '{ printf "%.1f", n / $1 }')
        [ -n "$tps" ] || { cat "$T/embed.err" >&2; exit 1; }
        best=$(awk -v a="$best" -v b="$tps" 'BEGIN { print (b > a ? b : a) }')
    done
    echo "$best"
}
field() { "$PY" -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

echo "bench_embed: h (--raw) of $NTEXTS lo10 validation texts, base teacher (6 x 384), fp32; best of $REPS; texts/s"
printf '  %-8s %-9s %9s %9s %7s   %s\n' threads batching ecr PyTorch ratio "check (PyTorch rows vs ecr's)"
fail=0
for th in $THREADS; do
    e=$(best_of "$th")
    if [ -z "$PY" ]; then
        printf '  %-8s %-9s %9.1f %9s\n' "$th" - "$e" SKIP
        continue
    fi
    for bt in $BATCHING; do
        j=$(torch_embed "$th" "$REPS" fp32 "$bt" "$T/h$th.npy")
        tp=$(field "$j" texts_per_s)
        read -r verdict why < <("$PY" -c 'import json, sys
r = json.loads(sys.argv[1])
ok = r["min_cosine"] >= 0.9999 and r["max_abs_diff"] <= 1e-3
print("same" if ok else "MISMATCH", "max |diff| %.2g (rows up to %.1f), min cosine %.9f" % (r["max_abs_diff"], r["max_abs_ecr"], r["min_cosine"]))' "$j")
        [ "$verdict" = same ] || fail=1
        printf '  %-8s %-9s %9.1f %9.1f %6.2fx   %s: %s\n' "$th" "$bt" "$e" "$tp" \
            "$(awk -v a="$e" -v b="$tp" 'BEGIN { print a / b }')" "$verdict" "$why"
    done
done
if [ -z "$PY" ]; then
    echo "  PyTorch: SKIP (no python3 with torch and numpy: apt-get install python3-torch python3-numpy)"
elif [ "$BF16_TEXTS" -gt 0 ]; then
    echo "bench_embed: PyTorch bf16 autocast on the first $BF16_TEXTS of them, padded, ${THREADS%% *} thread(s), one pass (for information; ecr here: $("$ECR_BIN" --version | sed -n 's/^bf16: //p'))"
    th=${THREADS%% *}
    j=$(NTEXTS=$BF16_TEXTS; torch_embed "$th" 1 bf16 padded "$T/h$th.npy")
    "$PY" -c 'import json, sys
r = json.loads(sys.argv[1])
print("  %-8s %-9s %9s %9.1f           max |diff| %.2g from ecr fp32, min cosine %.6f" % (sys.argv[2], "padded", "-",
      r["texts_per_s"], r["max_abs_diff"], r["min_cosine"]))' "$j" "$th"
fi
[ "$fail" = 0 ] || { echo "bench_embed: PyTorch's rows differ from ecr's" >&2; exit 1; }
