#!/usr/bin/env bash
# bench_generate.sh — generation speed of `ecr generate` against llama.cpp, and embedding
# throughput of the Python module against `ecr embed`, in one run.
#
# The model: a `small` student (4 layers x 256, vocabulary 8,192, 5.3 M parameters), trained
# for a few steps on lo10 with the shipped teacher's tokenizer and anchors (speed does not
# depend on how well it is trained), kept in build/bench-generate/ for the next run.
#
# Generation: the same model in the same precision, F32 weights (`ecr export --type f32`),
# 1 thread, greedy, the prompt "Click the" (BOS, then its tokens), NEW tokens (default 128) going
# on past end-of-text, best of REPS (default 3) runs each:
#   ecr generate --ids --temperature 0 --ignore-eot --precision fp32 --threads 1: its own
#     timer (from the first prompt token to the last new one, the model loaded);
#   llama.cpp through node-llama-cpp's prebuilt CPU build (tests/interop/llama.mjs `time`),
#     1 thread, with an F32 KV cache and no flash attention (ecr's cache is fp32) and at
#     llama.cpp's defaults (F16 KV cache, flash attention where it has it): the wall time
#     from node (which includes node-llama-cpp's overhead per token) and llama.cpp's own
#     decode time from its performance counters (prompt + generation).
# tokens/s = NEW / seconds, the prompt's evaluation included in the seconds. The runs
# alternate (ecr, then llama.cpp, REPS rounds). The greedy tokens of both must agree (a check
# that they ran the same model).
#
# Embedding: the first EMBED_TEXTS (default 1,000) lo10 validation texts, 1 thread, best of
# REPS: `ecr embed --data` (prepared beforehand), `ecr embed --text` (tokenization included)
# and ecr.Model.embed from Python (python/ecr over libecr.so; tokenization and the copy into
# NumPy included; the model loaded once). Rows of all three must be the same bytes.
#
# Goal (issue 17): ecr at least as fast as llama.cpp at generation. The verdict is printed,
# not enforced: the benchmark reports whatever it measures. Needs node with
# tests/interop/node_modules (npm ci --omit=optional --prefix tests/interop) for llama.cpp
# and python3 with numpy for the module; each part says SKIP without them.
set -eu
ECR_BIN=${ECR_BIN:-build/ecr}
case "$ECR_BIN" in /*) ;; *) ECR_BIN="$PWD/$ECR_BIN" ;; esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NEW=${BENCH_GEN_TOKENS:-128}
REPS=${BENCH_REPS:-3}
NTEXTS=${EMBED_TEXTS:-1000}
W=${BENCH_GEN_DIR:-$ROOT/build/bench-generate}
DATA=$ROOT/build/data/lo10
mkdir -p "$W"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# ---- the model ---------------------------------------------------------------------------------
if [ ! -f "$W/small/model.safetensors" ]; then
    echo "bench_generate: training a small student for 30 steps into $W/small (kept for the next run)"
    "$ECR_BIN" prepare --data "$DATA/train.jsonl" --tokenizer "$ROOT/teacher/model/tokenizer.json" \
        --out "$W/train.safetensors" --quiet
    "$ECR_BIN" train --data "$W/train.safetensors" --model small --anchors "$ROOT/teacher/anchors.safetensors" \
        --steps 30 --threads 2 --quiet --out "$W/small.tmp"
    rm -rf "$W/small" && mv "$W/small.tmp" "$W/small" && rm -f "$W/train.safetensors"
fi
M=$W/small
"$ECR_BIN" export --model "$M" --out "$T/small.gguf" --type f32 --quiet
PROMPT_IDS="0 $(echo "Click the" | "$ECR_BIN" tokenizer encode --tokenizer "$M/tokenizer.json")"
echo "$PROMPT_IDS" >"$T/prompt.ids"
echo "bench_generate: small (4 x 256, vocabulary 8192), F32, 1 thread, greedy, prompt \"Click the\" (ids $PROMPT_IDS), $NEW new tokens, best of $REPS"

# ---- generation: ecr and llama.cpp, run after run ---------------------------------------------------
# Each round runs ecr, then llama.cpp in both configurations, so that a change in the load of
# a shared machine touches both sides alike; the best round of each side counts.
LLAMA=1
if ! command -v node >/dev/null 2>&1 || [ ! -d "$ROOT/tests/interop/node_modules/node-llama-cpp" ]; then
    LLAMA=0
fi
best_ecr=0
: >"$T/ll_default.json"
: >"$T/ll_f32.json"
for r in $(seq "$REPS"); do
    "$ECR_BIN" generate --model "$M" --ids --prompt "$PROMPT_IDS" --temperature 0 --max-tokens "$NEW" --ignore-eot \
        --precision fp32 --threads 1 >"$T/ecr.ids" 2>"$T/ecr.err"
    # "generate: P prompt + N new tokens in S s (R tokens/s)": seconds = (P + N) / R
    tps=$(awk '/tokens\/s/ { gsub(/[()]/, ""); for (i = 1; i <= NF; i++) { if ($i == "prompt") p = $(i - 1); if ($i == "new") n = $(i - 1); if ($i == "tokens/s") r = $(i - 1) }
        printf "%.1f\n", n / ((p + n) / r) }' "$T/ecr.err")
    best_ecr=$(awk -v a="$best_ecr" -v b="$tps" 'BEGIN { print (b > a ? b : a) }')
    if [ "$LLAMA" = 1 ]; then
        node "$ROOT/tests/interop/llama.mjs" load "$T/small.gguf" time "$NEW" 1 "$T/prompt.ids" "$T/d.json" \
            exact time "$NEW" 1 "$T/prompt.ids" "$T/f.json"
        cat "$T/d.json" >>"$T/ll_default.json"
        cat "$T/f.json" >>"$T/ll_f32.json"
    fi
done
printf '  %-58s %8.1f tokens/s\n' "ecr generate" "$best_ecr"

best_ll=""
if [ "$LLAMA" = 0 ]; then
    echo "  llama.cpp: SKIP (node or tests/interop/node_modules missing: npm ci --omit=optional --prefix tests/interop)"
else
    for c in "f32:F32 KV cache, no flash attn" "default:F16 KV cache, flash attn auto"; do
        f=$T/ll_${c%%:*}.json
        read -r wall own < <(/usr/bin/env python3 - "$f" "$NEW" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
n = int(sys.argv[2])
print("%.1f %.1f" % (max(n / r["seconds"] for r in runs), max(n / ((r["prompt_ms"] + r["eval_ms"]) / 1000) for r in runs)))
PY
)
        printf '  %-58s %8.1f tokens/s wall (from node); %.1f by its own decode time\n' "llama.cpp (${c#*:})" "$wall" "$own"
        [ "${c%%:*}" = f32 ] && best_ll=$wall && best_own=$own
    done
    head -1 "$T/ll_f32.json" | /usr/bin/env python3 -c 'import json, sys; print(" ".join(map(str, json.loads(sys.stdin.read())["tokens"])))' >"$T/ll.ids"
    if cmp -s <(tr -s ' \n' ' ' <"$T/ecr.ids" | sed 's/ $//') <(tr -s ' \n' ' ' <"$T/ll.ids" | sed 's/ $//'); then
        echo "  greedy tokens: the same $NEW in both"
    else
        echo "  greedy tokens DIFFER: ecr $(head -c 80 "$T/ecr.ids") ... llama.cpp $(head -c 80 "$T/ll.ids") ..."
    fi
    awk -v e="$best_ecr" -v l="$best_ll" -v o="$best_own" 'BEGIN {
        printf "  ecr / llama.cpp (F32 cache): %.2fx against its wall time, %.2fx against its own decode time\n", e / l, e / o
        if (e >= l) print "  goal (ecr at least as fast as llama.cpp): met against the wall time from node"
        else printf "  goal (ecr at least as fast as llama.cpp): NOT met: ecr is %.0f%% slower\n", 100 * (1 - e / l)
        if (e < o) printf "  (llama.cpp'"'"'s own decode loop is %.2fx ecr'"'"'s speed)\n", o / e }'
fi

# ---- embedding: ecr embed against the Python module -------------------------------------------------
PY=""
for p in /usr/bin/python3 python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import numpy' 2>/dev/null; then PY=$p; break; fi
done
head -n "$NTEXTS" "$DATA/valid.jsonl" >"$T/e.jsonl"
/usr/bin/env python3 -c 'import json, sys
for l in open(sys.argv[1]): print(json.loads(l)["text"])' "$T/e.jsonl" >"$T/e.txt"
"$ECR_BIN" prepare --data "$T/e.jsonl" --tokenizer "$M/tokenizer.json" --out "$T/e.st" --quiet
echo "bench_generate: embedding $NTEXTS lo10 validation texts (u, through the projection), small, fp32, 1 thread, best of $REPS"
best_of() { # best texts/s of `ecr embed` runs with the given input flags
    local best=0 r tps
    for r in $(seq "$REPS"); do
        "$ECR_BIN" embed --model "$M" "$@" --out "$T/$1.npy" --precision fp32 --threads 1 2>"$T/embed.err" >/dev/null
        tps=$(sed -n 's/.* in \([0-9.]*\) s, .*/\1/p' "$T/embed.err" | awk -v n="$NTEXTS" '{ printf "%.1f", n / $1 }')
        best=$(awk -v a="$best" -v b="$tps" 'BEGIN { print (b > a ? b : a) }')
    done
    echo "$best"
}
e_data=$(best_of --data "$T/e.st")
e_text=$(best_of --text "$T/e.txt")
printf '  %-58s %8.1f texts/s\n' "ecr embed --data (prepared beforehand)" "$e_data" "ecr embed --text (tokenization included)" "$e_text"
if [ -z "$PY" ]; then
    echo "  Python: SKIP (no python3 with numpy: apt-get install python3-numpy)"
else
    ECR_LIB=$(dirname "$ECR_BIN")/libecr.so PYTHONPATH=$ROOT/python "$PY" - "$M" "$T/e.txt" "$T/--text.npy" "$REPS" <<'PY'
import sys, time
import numpy as np
import ecr
m_dir, txt, ref, reps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
texts = [l.rstrip("\n") for l in open(txt, encoding="utf-8")]
ecr.set_threads(1)
model = ecr.Model(m_dir, precision="fp32")
best = 0.0
for _ in range(reps):
    t0 = time.perf_counter()
    u = model.embed(texts)
    best = max(best, len(texts) / (time.perf_counter() - t0))
same = u.tobytes() == np.load(ref).tobytes()
print("  %-58s %8.1f texts/s (rows %s ecr embed --text's)" % ("Python ecr.Model.embed (tokenization, NumPy copy included)", best,
      "the same bytes as" if same else "DIFFERENT from"))
PY
fi
