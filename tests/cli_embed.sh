#!/usr/bin/env bash
# cli_embed.sh — `ecr embed`: usage and bad input (exit 2 / 1 with the file named, no output
# left behind), one row per text in file order, a text embedded alone equals its row in the
# packed run, --raw gives the pooled h and the default u = P h / |P h| of that h; the ECR
# pipeline end to end on a small corpus: teacher embed -> anchors -> ECR student -> embed.
set -u
. "$(dirname "$0")/cli_lib.sh"

PY=""
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import struct, json, array' 2>/dev/null; then PY=$p; break; fi
done
if [ -z "$PY" ]; then echo "cli_embed: python3 not found" >&2; exit 1; fi

# npy.py: small readers shared by the checks below (no numpy needed)
cat >"$T/npy.py" <<'EOF'
import array, json, struct, ast

def npy(path):
    with open(path, "rb") as f:
        b = f.read()
    assert b[:6] == b"\x93NUMPY", path
    hl = struct.unpack("<H", b[8:10])[0] if b[6] == 1 else struct.unpack("<I", b[8:12])[0]
    off = 10 if b[6] == 1 else 12
    h = ast.literal_eval(b[off:off + hl].decode())
    assert h["descr"] == "<f4" and not h["fortran_order"], h
    rows, cols = h["shape"]
    a = array.array("f")
    a.frombytes(b[off + hl:])
    assert len(a) == rows * cols
    return rows, cols, a

def tensor(path, name):
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    e = h[name]
    s, t = e["data_offsets"]
    a = array.array("f")
    a.frombytes(b[8 + n + s:8 + n + t])
    return e["shape"], a
EOF

# ---- usage and bad input -----------------------------------------------------------------
expect 0 "embed --help" -- "$ECR" embed --help
has "$T/out" "usage: ecr embed" "--help prints usage on stdout"
expect 2 "embed without --data" -- "$ECR" embed --model "$T/m" --out "$T/e.npy"
has "$T/err" "--data" "missing --data is named"
expect 2 "embed with an unknown flag" -- "$ECR" embed --model "$T/m" --data x --out "$T/e.npy" --no-such-flag 1
expect 2 "embed with --batch-tokens 0" -- "$ECR" embed --model "$T/m" --data x --out "$T/e.npy" --batch-tokens 0
printf 'this is not safetensors at all' >"$T/garbage.safetensors"
expect 2 "embed a garbage data file" -- "$ECR" embed --model "$T/m" --data "$T/garbage.safetensors" --out "$T/e.npy"
has "$T/err" "garbage.safetensors" "the bad file is named"
if [ -e "$T/e.npy" ]; then bad "a failed embed left $T/e.npy"; else ok; fi

VALID="$ROOT/build/data/lo10/valid.jsonl"
if [ ! -f "$VALID" ]; then
    bad "missing $VALID (make data)"
    echo "cli_embed: $pass passed, $fail failed"
    exit 1
fi
head -n 200 "$VALID" >"$T/small.jsonl"
sed -n 137p "$T/small.jsonl" >"$T/one.jsonl" # text 136 on its own
expect 0 "tokenizer train" -- "$ECR" tokenizer train --data "$T/small.jsonl" --vocab-size 320 --out "$T/tok.json" --quiet
expect 0 "prepare" -- "$ECR" prepare --data "$T/small.jsonl" --tokenizer "$T/tok.json" --out "$T/small.safetensors" --quiet
expect 0 "prepare one text" -- "$ECR" prepare --data "$T/one.jsonl" --tokenizer "$T/tok.json" --out "$T/one.safetensors" --quiet
SET=(--set dim=32 --set n_layers=1 --set n_heads=2 --set hidden_dim=64 --set max_seq_len=64)

# ---- a teacher (lm+contrastive), its embeddings, anchors ----------------------------------
expect 0 "train a teacher" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SET[@]}" \
    --objective lm+contrastive --group-size 3 --steps 6 --tokens-per-step 512 --threads 2 --out "$T/teacher" --quiet
expect 1 "embed a model folder that does not exist" -- "$ECR" embed --model "$T/nothing" --data "$T/small.safetensors" --out "$T/e.npy"
has "$T/err" "nothing" "the missing folder is named"
expect 0 "embed the teacher" -- "$ECR" embed --model "$T/teacher" --data "$T/small.safetensors" --out "$T/teacher.npy" --threads 2
has "$T/err" "no ECR projection" "a model without projection says it writes h"
has "$T/err" "texts/s" "texts/s on stderr"
"$PY" - "$T" <<'EOF' && ok || bad "teacher.npy: not 200 x 32"
import sys; sys.path.insert(0, sys.argv[1]); from npy import npy
r, c, _ = npy(sys.argv[1] + "/teacher.npy"); assert (r, c) == (200, 32), (r, c)
EOF
expect 0 "anchors" -- "$ECR" anchors --emb "$T/teacher.npy" --data "$T/small.safetensors" --k 5 --soft 2 --out "$T/anchors.safetensors" --quiet

# ---- an ECR student; embed u and --raw h ---------------------------------------------------
SSET=(--set dim=24 --set n_layers=1 --set n_heads=2 --set hidden_dim=48 --set max_seq_len=64)
expect 0 "train an ECR student" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SSET[@]}" \
    --anchors "$T/anchors.safetensors" --ecr-weight 0.1 --steps 6 --tokens-per-step 512 --threads 2 --out "$T/student" --quiet
expect 0 "embed u" -- "$ECR" embed --model "$T/student" --data "$T/small.safetensors" --out "$T/u.npy" --quiet
if [ -s "$T/err" ]; then bad "--quiet embed printed: $(cat "$T/err")"; else ok; fi
expect 0 "embed --raw" -- "$ECR" embed --model "$T/student" --data "$T/small.safetensors" --out "$T/h.npy" --raw --quiet
expect 0 "embed --raw, one row per batch" -- "$ECR" embed --model "$T/student" --data "$T/small.safetensors" \
    --out "$T/h64.npy" --raw --batch-tokens 64 --threads 1 --quiet
expect 0 "embed one text alone" -- "$ECR" embed --model "$T/student" --data "$T/one.safetensors" --out "$T/one.npy" --raw --quiet
"$PY" - "$T" <<'EOF' && ok || bad "embed shapes / packing invariance / u = normalise(P h)"
import sys, math
sys.path.insert(0, sys.argv[1]); from npy import npy, tensor
d = sys.argv[1]
ru, cu, u = npy(d + "/u.npy")
rh, ch, h = npy(d + "/h.npy")
r6, c6, h64 = npy(d + "/h64.npy")
r1, c1, one = npy(d + "/one.npy")
assert (ru, cu) == (200, 32), ("u", ru, cu)          # D = the teacher's dim
assert (rh, ch) == (200, 24) and (r6, c6) == (200, 24) and (r1, c1) == (1, 24), (rh, ch, r6, c6, r1, c1)
tol = 1e-5
# packing: another batch shape, and text 136 embedded alone, give the same rows
assert max(abs(a - b) for a, b in zip(h, h64)) < tol, "batch shape changes h"
assert max(abs(a - b) for a, b in zip(one, h[136 * 24:137 * 24])) < tol, "text alone != its row"
assert max(abs(x) for x in h) > 0.1
# u = P h / |P h| with the saved projection
shape, P = tensor(d + "/student/model.safetensors", "ecr.proj.weight")
assert shape == [32, 24], shape
worst = 0
for i in range(200):
    z = [sum(P[a * 24 + b] * h[i * 24 + b] for b in range(24)) for a in range(32)]
    n = math.sqrt(sum(x * x for x in z))
    worst = max(worst, max(abs(z[a] / n - u[i * 32 + a]) for a in range(32)))
assert worst < tol, worst
print("embed checks: u = normalise(P h) to %.1e" % worst)
EOF

# ---- data from another tokenizer is refused ------------------------------------------------
expect 0 "another tokenizer" -- "$ECR" tokenizer train --data "$T/small.jsonl" --vocab-size 300 --out "$T/tok2.json" --quiet
expect 0 "prepare with it" -- "$ECR" prepare --data "$T/small.jsonl" --tokenizer "$T/tok2.json" --out "$T/other.safetensors" --quiet
expect 2 "embed data of another tokenizer" -- "$ECR" embed --model "$T/student" --data "$T/other.safetensors" --out "$T/x.npy"
has "$T/err" "another tokenizer" "the tokenizer mismatch is explained"
if [ -e "$T/x.npy" ]; then bad "a refused embed left x.npy"; else ok; fi
if ls "$T" | grep -q '\.tmp'; then bad "temporary files left behind"; else ok; fi

cli_done
