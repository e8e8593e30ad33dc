#!/usr/bin/env bash
# bench_precision.sh — inference in bf16 against fp32, in one run: `ecr embed` and `ecr eval`
# of the 10,000 lo10 validation texts with the shipped `base` teacher (texts/s and the
# geometry metrics of each), and `ecr generate` (greedy, 200 tokens, tokens/s), 2 threads.
# Requirements where bf16 runs: embed and eval >= 2x their fp32 throughput, every geometry
# metric in [0, 1] within 0.005 of fp32's, bits/byte within 1%. Where this CPU or build has
# no bf16 engine (`ecr --version`), the fp32 side runs alone and the bf16 side says why.
#
# Environment: ECR_BIN (default build/ecr), BENCH_THREADS (2).
set -eu
ECR=${ECR_BIN:-build/ecr}
THREADS=${BENCH_THREADS:-2}
TEACHER=teacher/model
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
engine=$("$ECR" --version | sed -n 's/^bf16: //p')
precs="fp32"
[ "${engine#none}" != "$engine" ] || precs="fp32 bf16"
echo "bench_precision: bf16 engine: $engine"
"$ECR" prepare --data build/data/lo10/valid.jsonl --tokenizer "$TEACHER/tokenizer.json" --out "$T/valid.st" --quiet

# seconds CMD...: runs CMD (its stdout dropped), prints its wall time in seconds
seconds() { local t0=$EPOCHREALTIME; "$@" >/dev/null; awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{print b - a}'; }
for p in $precs; do
    seconds "$ECR" embed --model "$TEACHER" --data "$T/valid.st" --raw --precision "$p" --threads "$THREADS" \
        --quiet --out "$T/h-$p.npy" >"$T/embed-$p.s"
    seconds "$ECR" eval --model "$TEACHER" --data "$T/valid.st" --precision "$p" --threads "$THREADS" --quiet \
        --json "$T/eval-$p.json" >"$T/eval-$p.s"
    "$ECR" generate --model "$TEACHER" --prompt "The" --max-tokens 200 --temperature 0 --ignore-eot \
        --precision "$p" --threads "$THREADS" >/dev/null 2>"$T/gen-$p.err"
done
python3 - "$T" "$precs" "$engine" <<'PY'
import json, re, sys
T, precs, engine = sys.argv[1], sys.argv[2].split(), sys.argv[3]
n = 10000
res = {}
for p in precs:
    emb = float(open(f"{T}/embed-{p}.s").read())
    ev = float(open(f"{T}/eval-{p}.s").read())
    gen = float(re.search(r"\(([0-9.]+) tokens/s decode\)", open(f"{T}/gen-{p}.err").read()).group(1))
    res[p] = (emb, ev, gen, json.load(open(f"{T}/eval-{p}.json")))
    print(f"bench_precision: {p}: embed {n / emb:6.0f} texts/s, eval {n / ev:6.0f} texts/s, "
          f"generate {gen:6.1f} tokens/s")
if "bf16" not in res:
    print(f"bench_precision: bf16: n/a ({engine})")
    sys.exit(0)
ok = True
def check(what, v, need, higher=True):
    global ok
    good = v >= need if higher else v <= need
    ok &= good
    print(f"bench_precision: {what} {v:.4g} (need {'>=' if higher else '<='} {need}): {'PASS' if good else 'FAIL'}")
a, b = res["fp32"], res["bf16"]
check("embed bf16 / fp32 throughput", a[0] / b[0], 2.0)
check("eval bf16 / fp32 throughput", a[1] / b[1], 2.0)
print(f"bench_precision: generate bf16 / fp32 {b[2] / a[2]:.2f}")
ja, jb = a[3], b[3]
bpb = lambda j: j["lm"]["overall"]["bpb"]
check("bits/byte |bf16 - fp32| / fp32", abs(bpb(jb) - bpb(ja)) / bpb(ja), 0.01, higher=False)
for key in ("p1", "label_transfer", "anisotropy", "silhouette"):
    va, vb = ja["geometry"]["h"][key], jb["geometry"]["h"][key]
    if isinstance(va, dict):
        va, vb = va["mean"], vb["mean"]
    check(f"h {key} |bf16 - fp32|", abs(vb - va), 0.005, higher=False)
sys.exit(0 if ok else 1)
PY
