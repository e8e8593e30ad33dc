#!/usr/bin/env bash
# bench_eval.sh — `ecr eval` with every metric on 20,000 texts with a `small` model (4 x 256,
# ECR projection to 384 dims), 2 threads, against a 60 s budget; and, as a peer in the same
# run, scikit-learn's silhouette_score(metric="cosine") + a NumPy P@1 on the same h.
#
# Setup (not timed): the first 20,000 texts of lo10 train, a tokenizer, a `small` model after
# one step (timing does not depend on training), a fake teacher .npy of 20,000 x 384 (NumPy:
# a shared vector per translation group plus noise; without NumPy, the model's own u from
# `ecr embed`), anchors from it (`ecr anchors --k 256`).
# Timed: ecr eval --teacher-emb --anchors (LM metrics, embeddings, geometry of h and u, CKA,
# k-NN overlap, anchor agreement). The peer needs /usr/bin/python3 with numpy + scikit-learn
# (skipped with a message otherwise). The machine may be shared: timings are noisy.
#
# Environment: ECR_BIN (default build/ecr), BENCH_TEXTS (default 20000), BENCH_THREADS (2).
set -u
ECR=${ECR_BIN:-build/ecr}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${BENCH_TEXTS:-20000}
THREADS=${BENCH_THREADS:-2}
BUDGET=60
PY=/usr/bin/python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
TRAIN="$ROOT/build/data/lo10/train.jsonl"
[ -f "$TRAIN" ] || { echo "bench_eval: missing $TRAIN (make data)" >&2; exit 1; }
die() { echo "bench_eval: $*" >&2; exit 1; }

echo "bench_eval: setup ($N texts of lo10 train, small model with a 384-dim projection)"
head -n "$N" "$TRAIN" >"$T/texts.jsonl"
"$ECR" tokenizer train --data "$T/texts.jsonl" --vocab-size 8192 --out "$T/tok.json" --threads "$THREADS" --quiet || die "tokenizer train failed"
"$ECR" prepare --data "$T/texts.jsonl" --tokenizer "$T/tok.json" --out "$T/data.safetensors" --quiet || die "prepare failed"
"$ECR" train --data "$T/data.safetensors" --model small --set ecr_dim=384 --steps 1 --threads "$THREADS" \
    --out "$T/m" --quiet || die "train failed"
"$ECR" embed --model "$T/m" --data "$T/data.safetensors" --out "$T/h.npy" --raw --quiet || die "embed failed"

HAVE_NP=0
if [ -x "$PY" ] && "$PY" -c "import numpy" 2>/dev/null; then HAVE_NP=1; fi
if [ "$HAVE_NP" = 1 ]; then
    "$PY" - "$T/texts.jsonl" "$T/teacher.npy" <<'EOF' || die "writing the fake teacher failed"
import json, sys
import numpy as np
groups = [json.loads(l).get("group") for l in open(sys.argv[1], encoding="utf-8")]
ids = {g: i for i, g in enumerate(dict.fromkeys(groups))}
rng = np.random.default_rng(1)
gv = rng.normal(size=(len(ids), 384)).astype(np.float32)
t = gv[[ids[g] for g in groups]] + rng.normal(size=(len(groups), 384)).astype(np.float32)
np.save(sys.argv[2], t.astype(np.float32))
EOF
else
    echo "bench_eval: no NumPy at $PY: the teacher is the model's own u (ecr embed)"
    "$ECR" embed --model "$T/m" --data "$T/data.safetensors" --out "$T/teacher.npy" --quiet || die "embed failed"
fi
"$ECR" anchors --emb "$T/teacher.npy" --k 256 --threads "$THREADS" --out "$T/anchors.safetensors" --quiet || die "anchors failed"

echo "bench_eval: timing ecr eval (all metrics, $THREADS threads; load average before: $(cut -d' ' -f1-3 /proc/loadavg))"
TIMEFORMAT='%R %U %S'
{ time "$ECR" eval --model "$T/m" --data "$T/data.safetensors" --teacher-emb "$T/teacher.npy" \
    --anchors "$T/anchors.safetensors" --threads "$THREADS" --json "$T/metrics.json" >"$T/out" 2>"$T/err" \
    || { cat "$T/err" >&2; die "eval failed"; } ; } 2>"$T/time"
read -r EVAL_S USER_S SYS_S <"$T/time"
CPU_S=$(echo "$USER_S + $SYS_S" | bc -l)
LM_LINE=$(tr '\r' '\n' <"$T/err" | grep '^eval: batch' | tail -n 1)
echo "  ${LM_LINE/eval: batch/eval: LM + embeddings, one forward: batch}"
grep -E "^eval: (teacher|geometry)" "$T/err" | sed 's/^/  /'
grep '^all ' "$T/out" | awk '{printf "  LM: %s texts, %s tokens, bits/byte %s\n", $2, $3, $7}'
sed -n '/^geometry/,/^$/p' "$T/out" | sed 's/^/  /'
# the geometry of h: neighbours (silhouette + k-NN lists) + languages (P@1 + label transfer)
OURS=$(sed -n 's/^eval: geometry of h .*neighbours \([0-9.]*\) s, languages \([0-9.]*\) s.*/\1 + \2/p' "$T/err" | bc -l)
printf "ecr eval, %d texts, all metrics: %.1f s (budget %d s: %s; load average after: %s)\n" "$N" "$EVAL_S" \
    "$BUDGET" "$(echo "$EVAL_S <= $BUDGET" | bc -l | sed 's/1/within/;s/0/OVER/')" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf "  CPU time %.1f s = %.2f cores on average (%s threads asked; fewer means other jobs took the cores)\n" \
    "$CPU_S" "$(echo "$CPU_S / $EVAL_S" | bc -l)" "$THREADS"

if [ "$HAVE_NP" = 1 ] && "$PY" -c "import sklearn" 2>/dev/null; then
    OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS "$PY" - "$T/texts.jsonl" "$T/h.npy" >"$T/peer" <<'EOF' || die "peer failed"
import json, sys, time
import numpy as np
from sklearn.metrics import silhouette_score
rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
h = np.load(sys.argv[2])
label = np.array([r.get("label") or "" for r in rows])
lang = np.array([r.get("lang") or "" for r in rows])
group = np.array([r.get("group") or "" for r in rows])
t0 = time.perf_counter()
sil = silhouette_score(h, label, metric="cosine")
t1 = time.perf_counter()
x = h / np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-30)
en = np.where(lang == "en")[0]
p1 = []
for l in sorted(set(lang) - {"en"}):
    xs = np.where(lang == l)[0]
    s = x[en] @ x[xs].T
    a = np.mean(group[xs[np.argmax(s, axis=1)]] == group[en])
    b = np.mean(group[en[np.argmax(s, axis=0)]] == group[xs])
    p1.append((a + b) / 2)
t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f} {sil:.6f} {np.mean(p1):.6f}")
EOF
    read -r SIL_S P1_S SIL P1 <"$T/peer"
    MINE=$("$PY" -c "import json; g = json.load(open('$T/metrics.json'))['geometry']['h']; print('%.6f %.6f' % (g['silhouette'], g['p1']['mean']))")
    PEER=$(echo "$SIL_S + $P1_S" | bc -l)
    printf "peer on the same h: sklearn silhouette_score %.1f s + NumPy P@1 %.2f s = %.1f s (silhouette %s, P@1 %s; ecr: %s)\n" \
        "$SIL_S" "$P1_S" "$PEER" "$SIL" "$P1" "$MINE"
    printf "ecr geometry of h, neighbour pass (silhouette + 10-NN lists) + languages (P@1 + label transfer): %.1f s\n" "$OURS"
    if [ "$(echo "$OURS > 0" | bc -l)" = 1 ]; then
        printf "ratio (peer / ecr on those metrics): %.2fx\n" "$(echo "$PEER / $OURS" | bc -l)"
    else
        echo "ratio: n/a (ecr's part is below the 0.01 s resolution)"
    fi
else
    echo "peer skipped: $PY has no numpy + scikit-learn"
fi
