#!/usr/bin/env bash
# bench_generate.sh — inference speed of `ecr generate` against llama.cpp on the same models,
# prefill and decode apart, and embedding throughput of the Python module against
# `ecr embed`, in one run.
#
# Models: `tiny` (2 x 128) and `small` (4 x 256) students, trained for a few steps on lo10
# with the shipped teacher's tokenizer and anchors (speed does not depend on how well they
# are trained; kept in build/bench-generate/ for the next run), and the shipped `base`
# teacher (6 x 384); vocabulary 8,192 each. Each is exported to GGUF (`ecr export --type
# f32`) for llama.cpp: node-llama-cpp's prebuilt CPU libraries (the ones tests/cli_export.sh
# checks ecr's numbers against), driven through llama.cpp's C API by bench/llama_time.c (built
# here against the llama.h of the same release, from node-llama-cpp's bundled sources), with
# an F32 KV cache and no flash attention: the same precision as ecr's fp32 (weights, cache
# and arithmetic). Not through node: node-llama-cpp's hand-offs between tokens cost llama.cpp's
# thread pool most of its decode speed at 2 threads on 2 cores (14 ms a token for `tiny`).
#
# Each measurement: the prompt PROMPT tokens of lo10 validation text (BOS first; default 128),
# then NEW greedy tokens (default 128) going on past end-of-text, at 1 and 2 threads, best
# of REPS (default 5) runs, ecr and llama.cpp alternating run after run so that the load of
# a shared machine touches both alike:
#   prefill tokens/s = PROMPT / (time from the start to the first new token's logits);
#   decode tokens/s  = steps / (time of the NEW - 1 steps after it).
# Both are timed the same way, inside the process, the model loaded (`ecr generate` prints its
# times; llama_time.c times llama_decode and the argmax). The greedy tokens of both must agree
# (a check that they ran the same model).
#
# Precision: F32, and BF16 (`ecr export --type bf16` for llama.cpp; both round the weights and
# each product's input to bf16 and sum in fp32). Where ecr has no bf16 engine (`ecr --version`:
# no AMX-BF16 or AVX512-BF16, or no oneDNN), its BF16 runs with ECR_BF16_EMULATE=1: decoding's
# one-row products are ecr's own kernel either way, but the prefill's go through the
# reference engine (weights widened to fp32 per product), which the table then says.
#
# Goal (issue: inference speed): decode and prefill at least 1.0x llama.cpp at every size
# and thread count. The verdict is printed, not enforced. Needs tests/interop/node_modules
# (npm ci --omit=optional --prefix tests/interop) and git for llama.cpp, and python3 with numpy
# for the module; each part says SKIP without them.
set -eu
ECR_BIN=${ECR_BIN:-build/ecr}
case "$ECR_BIN" in /*) ;; *) ECR_BIN="$PWD/$ECR_BIN" ;; esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NEW=${BENCH_GEN_TOKENS:-128}
NPROMPT=${BENCH_GEN_PROMPT:-128}
REPS=${BENCH_REPS:-5}
NTEXTS=${EMBED_TEXTS:-1000}
W=${BENCH_GEN_DIR:-$ROOT/build/bench-generate}
DATA=$ROOT/build/data/lo10
mkdir -p "$W"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# ---- the models --------------------------------------------------------------------------------
for size in tiny small; do
    [ -f "$W/$size/model.safetensors" ] && continue
    echo "bench_generate: training a $size student for 30 steps into $W/$size (kept for the next run)"
    [ -f "$W/train.safetensors" ] || "$ECR_BIN" prepare --data "$DATA/train.jsonl" \
        --tokenizer "$ROOT/teacher/model/tokenizer.json" --out "$W/train.safetensors" --quiet
    "$ECR_BIN" train --data "$W/train.safetensors" --model "$size" --anchors "$ROOT/teacher/anchors.safetensors" \
        --steps 30 --threads 2 --quiet --out "$W/$size.tmp"
    rm -rf "$W/$size" && mv "$W/$size.tmp" "$W/$size"
done
rm -f "$W/train.safetensors"
declare -A MDIR=([tiny]=$W/tiny [small]=$W/small [base]=$ROOT/teacher/model)
for size in tiny small base; do "$ECR_BIN" export --model "${MDIR[$size]}" --out "$T/$size.gguf" --type f32 --quiet; done
# The prompt: BOS, then the first NPROMPT - 1 tokens of the validation texts, one after another.
PROMPT_IDS="0 $(head -n 50 "$DATA/valid.jsonl" | /usr/bin/env python3 -c 'import json, sys
print(" ".join(json.loads(l)["text"] for l in sys.stdin))' |
    "$ECR_BIN" tokenizer encode --tokenizer "$ROOT/teacher/model/tokenizer.json" | tr ' ' '\n' | head -n $((NPROMPT - 1)) | tr '\n' ' ' | sed 's/ $//')"
echo "$PROMPT_IDS" >"$T/prompt.ids"

# ---- generation: ecr and llama.cpp, run after run ---------------------------------------------------
# llama_time: built once into $W against the headers of the release the libraries come from.
LLAMA=1
LLIBS=$ROOT/tests/interop/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64
BUNDLE=$ROOT/tests/interop/node_modules/node-llama-cpp/llama/gitRelease.bundle
if [ ! -d "$LLIBS" ] || [ ! -f "$BUNDLE" ] || ! command -v git >/dev/null 2>&1; then
    LLAMA=0
elif [ ! -x "$W/llama_time" ] || [ "$ROOT/bench/llama_time.c" -nt "$W/llama_time" ]; then
    [ -f "$W/llama.cpp/include/llama.h" ] || { rm -rf "$W/llama.cpp" && git -c advice.detachedHead=false clone -q "$BUNDLE" "$W/llama.cpp"; }
    ${CC:-cc} -O2 -Wall -Wextra -Werror "$ROOT/bench/llama_time.c" -I"$W/llama.cpp/include" -I"$W/llama.cpp/ggml/include" \
        "$(ls "$LLIBS"/libllama.*so | head -1)" "$(ls "$LLIBS"/libggml.*so | head -1)" "$LLIBS/libggml-base.so" \
        -Wl,-rpath,"$LLIBS" -o "$W/llama_time"
fi
PRECS="F32 BF16"
EMU=""
if "$ECR_BIN" --version | grep -q '^bf16: none'; then
    EMU="ECR_BF16_EMULATE=1"
    echo "bench_generate: ecr has no bf16 engine here ($("$ECR_BIN" --version | sed -n 's/^bf16: none: //p')):" \
        "its BF16 rows run the reference engine (ECR_BF16_EMULATE=1) for the prefill"
fi
echo "bench_generate: $NPROMPT prompt tokens, then $NEW greedy new tokens; best of $REPS; tokens/s (ecr / llama.cpp = ratio)"
printf '  %-6s %-5s %-8s %-31s %-31s %s\n' model prec threads "prefill: ecr / llama.cpp" "decode: ecr / llama.cpp" "greedy tokens"
: >"$T/verdict"
for prec in $PRECS; do
    ep=fp32 lt=f32
    [ "$prec" = BF16 ] && ep=bf16 lt=bf16
    for size in ${BENCH_MODELS:-tiny small base}; do
        M=${MDIR[$size]}
        [ "$lt" = f32 ] || "$ECR_BIN" export --model "$M" --out "$T/$size.gguf" --type "$lt" --quiet
        for th in ${BENCH_THREADS:-1 2}; do
            : >"$T/ll.json"
            : >"$T/ll.err"
            bp=0 bd=0
            for r in $(seq "$REPS"); do
                env $([ "$prec" = BF16 ] && echo "$EMU") "$ECR_BIN" generate --model "$M" --ids --prompt "$PROMPT_IDS" --temperature 0 --max-tokens "$NEW" \
                    --ignore-eot --precision "$ep" --threads "$th" >"$T/ecr.ids" 2>"$T/ecr.err"
                read -r p d < <(sed -n 's/.*(\([0-9.]*\) tokens\/s prefill).*(\([0-9.]*\) tokens\/s decode).*/\1 \2/p' "$T/ecr.err")
                bp=$(awk -v a="$bp" -v b="$p" 'BEGIN { print (b > a ? b : a) }')
                bd=$(awk -v a="$bd" -v b="$d" 'BEGIN { print (b > a ? b : a) }')
                if [ "$LLAMA" = 1 ]; then
                    "$W/llama_time" "$LLIBS" "$T/$size.gguf" "$th" "$NEW" 1 "$T/prompt.ids" >>"$T/ll.json" 2>>"$T/ll.err" ||
                        { cat "$T/ll.err" >&2; exit 1; }
                fi
            done
            if [ "$LLAMA" = 1 ]; then
                read -r lp ld same < <(/usr/bin/env python3 - "$T/ll.json" "$T/ecr.ids" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
ecr = open(sys.argv[2]).read().split()
print("%.1f %.1f %s" % (max(r["prefill_tps"] for r in runs), max(r["decode_tps"] for r in runs),
      "same" if all(list(map(str, r["tokens"])) == ecr for r in runs) else "DIFFER"))
PY
)
                printf '  %-6s %-5s %-8s %8.0f / %8.0f = %5.2fx     %8.0f / %8.0f = %5.2fx     %s\n' "$size" "$prec" "$th" \
                    "$bp" "$lp" "$(awk -v a="$bp" -v b="$lp" 'BEGIN { print a / b }')" \
                    "$bd" "$ld" "$(awk -v a="$bd" -v b="$ld" 'BEGIN { print a / b }')" "$same"
                echo "$size $prec $th $bp $lp $bd $ld" >>"$T/verdict"
            else
                printf '  %-6s %-5s %-8s %8.0f / SKIP                %8.0f / SKIP\n' "$size" "$prec" "$th" "$bp" "$bd"
            fi
        done
    done
done
if [ "$LLAMA" = 0 ]; then
    echo "  llama.cpp: SKIP (git or tests/interop/node_modules missing: npm ci --omit=optional --prefix tests/interop)"
else
    awk '{ for (k = 0; k < 2; k++) { e = $(4 + 2 * k); l = $(5 + 2 * k); ph = k ? "decode" : "prefill"; n++
             if (e < l) { miss++; printf "  below llama.cpp: %s %s %s threads %s: %.2fx\n", $1, $2, $3, ph, e / l } } }
         END { if (miss) printf "  goal (prefill and decode at least 1.0x llama.cpp): NOT met in %d of %d\n", miss, n
               else printf "  goal (prefill and decode at least 1.0x llama.cpp): met in all %d\n", n }' "$T/verdict"
fi
M=$W/small

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
