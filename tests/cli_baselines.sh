#!/usr/bin/env bash
# cli_baselines.sh — `ecr train --kd / --feat / --rkd` from the command line: a tiny teacher
# trained here, its `ecr embed --raw` vectors; each baseline alone and all of them with ECR and
# the contrastive objective run a few steps and log their terms; resume keeps the options;
# bad inputs (vocabulary, rows, dims, max_seq_len, non-finite vectors, orphan flags) exit 2
# with one line naming the files, and leave no output folder or temporary file behind.
set -u
. "$(dirname "$0")/cli_lib.sh"

one_line() { # one_line DESCRIPTION: stderr is a single "ecr: ..." line
    if [ "$(wc -l <"$T/err")" = 1 ] && grep -q '^ecr' "$T/err"; then ok; else bad "$1: not one line: $(cat "$T/err")"; fi
}
gone() { # gone DIR DESCRIPTION: a refused run left nothing
    if [ -e "$1" ]; then bad "$2: $1 was left behind"; else ok; fi
}
steps() { grep -c '"loss"' "$1/log.jsonl" 2>/dev/null || echo 0; }
PY=""
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import struct, json, array, ast' 2>/dev/null; then PY=$p; break; fi
done
if [ -z "$PY" ]; then echo "cli_baselines: python3 not found" >&2; exit 1; fi

# npy.py: read and write small float32 .npy files (no numpy needed)
cat >"$T/npy.py" <<'EOF'
import array, ast, struct

def read(path):
    with open(path, "rb") as f:
        b = f.read()
    assert b[:6] == b"\x93NUMPY", path
    hl = struct.unpack("<H", b[8:10])[0] if b[6] == 1 else struct.unpack("<I", b[8:12])[0]
    off = 10 if b[6] == 1 else 12
    h = ast.literal_eval(b[off:off + hl].decode())
    rows, cols = h["shape"]
    a = array.array("f")
    a.frombytes(b[off + hl:])
    return rows, cols, a

def write(path, rows, cols, a):
    head = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, cols)
    head += " " * (63 - (10 + len(head)) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head.encode())
        f.write(array.array("f", a).tobytes())
EOF

# ---- usage --------------------------------------------------------------------------------
expect 0 "train --help" -- "$ECR" train --help
for f in --kd --kd-alpha --kd-temp --feat --feat-weight --rkd --rkd-weight; do
    has "$T/out" "  $f " "--help describes $f"
done
expect 2 "--kd-alpha without --kd" -- "$ECR" train --data x --model tiny --out "$T/o" --kd-alpha 0.3
has "$T/err" "--kd-alpha needs --kd" "the orphan flag is named"
expect 2 "--feat-weight without --feat" -- "$ECR" train --data x --model tiny --out "$T/o" --feat-weight 2
expect 2 "--rkd-weight without --rkd" -- "$ECR" train --data x --model tiny --out "$T/o" --rkd-weight 2
expect 2 "--kd-alpha above 1" -- "$ECR" train --data x --model tiny --out "$T/o" --kd "$T" --kd-alpha 1.5
gone "$T/o" "usage errors"

VALID="$ROOT/build/data/lo10/valid.jsonl"
if [ ! -f "$VALID" ]; then
    bad "missing $VALID (make data)"
    echo "cli_baselines: $pass passed, $fail failed"
    exit 1
fi

# ---- inputs: data, a tiny teacher, its raw embeddings, anchors from them ----------------------
head -n 200 "$VALID" >"$T/small.jsonl"
head -n 150 "$VALID" >"$T/fewer.jsonl"
expect 0 "tokenizer train" -- "$ECR" tokenizer train --data "$T/small.jsonl" --vocab-size 320 --out "$T/tok.json" --quiet
expect 0 "prepare" -- "$ECR" prepare --data "$T/small.jsonl" --tokenizer "$T/tok.json" --out "$T/small.safetensors" --quiet
expect 0 "prepare fewer texts" -- "$ECR" prepare --data "$T/fewer.jsonl" --tokenizer "$T/tok.json" --out "$T/fewer.safetensors" --quiet
TSET=(--set dim=32 --set n_layers=1 --set n_heads=2 --set hidden_dim=64 --set max_seq_len=64)
SSET=(--set dim=24 --set n_layers=1 --set n_heads=2 --set hidden_dim=48 --set max_seq_len=64)
RUN=(--steps 4 --tokens-per-step 256 --threads 1 --quiet)
expect 0 "train a teacher" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${TSET[@]}" \
    --objective lm+contrastive --group-size 2 --steps 6 --tokens-per-step 256 --threads 1 --out "$T/teacher" --quiet
expect 0 "embed the teacher (--raw)" -- "$ECR" embed --model "$T/teacher" --data "$T/small.safetensors" --raw \
    --out "$T/teacher.npy" --threads 1 --quiet
expect 0 "embed the teacher on fewer texts" -- "$ECR" embed --model "$T/teacher" --data "$T/fewer.safetensors" --raw \
    --out "$T/fewer.npy" --threads 1 --quiet
expect 0 "anchors" -- "$ECR" anchors --emb "$T/teacher.npy" --data "$T/small.safetensors" --k 4 \
    --out "$T/anchors.safetensors" --quiet
# the first 16 columns (another dim), and a copy with one NaN
"$PY" - "$T" <<'EOF' && ok || bad "could not derive the test .npy files"
import math, sys
sys.path.insert(0, sys.argv[1]); import npy
d = sys.argv[1]
r, c, a = npy.read(d + "/teacher.npy")
assert (r, c) == (200, 32), (r, c)
npy.write(d + "/teacher16.npy", r, 16, [a[i * c + j] for i in range(r) for j in range(16)])
a[7 * c + 3] = math.nan
npy.write(d + "/nan.npy", r, c, a)
EOF

# ---- each baseline alone ------------------------------------------------------------------------
expect 0 "train ECR + KD with a tag" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SSET[@]}" "${RUN[@]}" \
    --anchors "$T/anchors.safetensors" --kd "$T/teacher" --tag "ECR + KD, K=4" --out "$T/ekd"
expect 0 "train --kd" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SSET[@]}" "${RUN[@]}" \
    --kd "$T/teacher" --kd-alpha 0.5 --kd-temp 2 --out "$T/kd"
expect 0 "train --feat" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SSET[@]}" "${RUN[@]}" \
    --feat "$T/teacher.npy" --feat-weight 0.5 --out "$T/feat"
expect 0 "train --rkd (with progress)" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SSET[@]}" \
    --steps 4 --tokens-per-step 256 --threads 1 --log-every 2 --rkd "$T/teacher.npy" --out "$T/rkd"
has "$T/err" "train: RKD 1 x (25 distance + 50 angle) with teacher vectors of dim 32" "the start line describes RKD"
has "$T/err" "step 4/4 .* rkd [0-9]" "progress lines show the RKD term"
for run in kd feat rkd; do
    if [ "$(steps "$T/$run")" = 4 ]; then ok; else bad "$run: not 4 step records"; fi
    if [ "$(grep -c "\"$run\":[0-9]" "$T/$run/log.jsonl")" = 4 ]; then ok; else bad "$run: the term is not in every step record"; fi
    has "$T/$run/log.jsonl" '"total":' "$run: the log has the total"
done
for other in ecr contrastive feat rkd; do
    if grep -q "\"$other\":" "$T/kd/log.jsonl"; then bad "the kd log has a \"$other\" field"; else ok; fi
done
"$PY" - "$T" <<'EOF' && ok || bad "log totals / model metadata"
import json, struct, sys
d = sys.argv[1]
def recs(run):
    return [json.loads(l) for l in open(f"{d}/{run}/log.jsonl") if '"loss"' in l]
def meta(run):
    b = open(f"{d}/{run}/model.safetensors", "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return h.get("__metadata__", {}), h
for r in recs("kd"):        # (1 - alpha) lm + alpha kd
    assert abs(r["total"] - (0.5 * r["loss"] + 0.5 * r["kd"])) < 1e-5 * r["total"], r
for r in recs("feat"):
    assert 0 <= r["feat"] <= 2 and abs(r["total"] - (r["loss"] + 0.5 * r["feat"])) < 1e-5 * r["total"], r
for r in recs("rkd"):
    assert r["rkd"] > 0 and abs(r["total"] - (r["loss"] + r["rkd"])) < 1e-5 * r["total"], r
m, h = meta("kd")
assert m["kd_alpha"] == "0.5" and m["kd_temp"] == "2" and len(m["kd_teacher_hash"]) == 16, m
assert m["kd_teacher"].endswith("/teacher") and "ecr.proj.weight" not in h, m
m, h = meta("feat")
assert m["feat_dim"] == "32" and m["feat_weight"] == "0.5" and m["feat_source"].endswith("teacher.npy"), m
assert h["ecr.proj.weight"]["shape"] == [32, 24], h["ecr.proj.weight"]
m, h = meta("rkd")
assert m["rkd_dim"] == "32" and m["rkd_weight"] == "1" and len(m["rkd_hash"]) == 16, m
for run, method in (("kd", "kd"), ("feat", "feat"), ("rkd", "rkd")):
    r = json.load(open(f"{d}/{run}/run.json"))
    assert r["method"] == method and r["preset"] == "tiny" and r["tag"] is None, r
r = json.load(open(f"{d}/ekd/run.json"))
assert r["method"] == "ecr+kd+rel+orth" and r["tag"] == "ECR + KD, K=4" and r["ecr_weight"] == 0.05, r
assert r["orth_weight"] == 1 and r["rel_weight"] == 1, r  # orth and rel are part of ECR's defaults
assert r["kd_alpha"] == 0.5 and r["objective"] == "lm" and r["steps"] == 4, r
print("baseline logs, metadata and run.json: ok")
EOF

# ---- everything at once: lm+contrastive, ECR, KD, feat and RKD on one projection ---------------
expect 0 "train with every term" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SSET[@]}" "${RUN[@]}" \
    --objective lm+contrastive --anchors "$T/anchors.safetensors" --kd "$T/teacher" --feat "$T/teacher.npy" \
    --rkd "$T/teacher.npy" --rkd-weight 0.1 --out "$T/all"
"$PY" - "$T" <<'EOF' && ok || bad "the combined log does not add up"
import json, sys
d = sys.argv[1]
rs = [json.loads(l) for l in open(f"{d}/all/log.jsonl") if '"loss"' in l]
assert len(rs) == 4
for r in rs:
    want = (0.5 * r["loss"] + r["contrastive"] + 0.05 * r["ecr"] + 0.5 * r["kd"] + r["feat"] + 0.1 * r["rkd"]
            + r["rel"] + r["orth"])
    assert abs(r["total"] - want) < 1e-5 * abs(want), (r, want)
assert json.load(open(f"{d}/all/run.json"))["method"] == "ecr+kd+feat+rkd+rel+orth"
EOF

# ---- the codes-only terms: rel, con and orth with ECR, from the anchors alone -------------------
expect 0 "train with the codes-only terms" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SSET[@]}" \
    --steps 4 --tokens-per-step 256 --threads 1 --anchors "$T/anchors.safetensors" --rel-weight 0.5 \
    --con-weight 0.2 --con-tau 0.3 --orth-weight 0.1 --out "$T/codes"
has "$T/err" "train: term rel: rel_weight 0.5, rel_on_h 0" "the start line names a term without hooks"
"$PY" - "$T" <<'EOF' && ok || bad "the codes-only log, run.json or metadata do not add up"
import json, struct, sys
d = sys.argv[1]
rs = [json.loads(l) for l in open(f"{d}/codes/log.jsonl") if '"loss"' in l]
assert len(rs) == 4
for r in rs:
    want = r["loss"] + 0.05 * r["ecr"] + 0.5 * r["rel"] + 0.2 * r["con"] + 0.1 * r["orth"]
    assert abs(r["total"] - want) < 1e-5 * abs(want), (r, want)
run = json.load(open(f"{d}/codes/run.json"))
assert run["method"] == "ecr+rel+con+orth", run["method"]
assert run["rel_weight"] == 0.5 and run["con_tau"] == 0.3 and run["orth_weight"] == 0.1, run
b = open(f"{d}/codes/model.safetensors", "rb").read()
meta = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])["__metadata__"]
assert [round(float(meta[k]), 6) for k in ("rel_weight", "con_weight", "orth_weight")] == [0.5, 0.2, 0.1], meta
EOF
# orth and rel are on by default beside ECR (--orth-weight 0 --rel-weight 0: ECR alone, as the
# main study ran it), and only beside it: the feat run above has neither in its log, and either
# flag alone is an orphan
expect 0 "ECR with --orth-weight 0 --rel-weight 0" -- "$ECR" train --data "$T/small.safetensors" --model tiny \
    "${SSET[@]}" "${RUN[@]}" --anchors "$T/anchors.safetensors" --orth-weight 0 --rel-weight 0 --out "$T/ecr_alone"
"$PY" - "$T" <<'EOF' && ok || bad "a weight of 0 leaves orth or rel in, or the default leaves them out"
import json, sys
d = sys.argv[1]
def recs(run): return [json.loads(l) for l in open(f"{d}/{run}/log.jsonl") if '"loss"' in l]
assert all("orth" not in r and "rel" not in r and abs(r["total"] - r["loss"] - 0.05 * r["ecr"]) < 1e-5 * r["total"]
           for r in recs("ecr_alone"))
run = json.load(open(f"{d}/ecr_alone/run.json"))
assert run["method"] == "ecr" and "orth_weight" not in run and "rel_weight" not in run, run
assert all(r["orth"] >= 0 and r["rel"] >= 0 for r in recs("ekd"))
assert all("orth" not in r and "rel" not in r for r in recs("feat"))
EOF
expect 2 "--orth-weight without anchors" -- "$ECR" train --data x --model tiny --out "$T/o" --orth-weight 2
has "$T/err" "--orth-weight needs --anchors" "the term orth needs is named"
expect 2 "--con-tau without --con-weight" -- "$ECR" train --data x --model tiny --out "$T/o" --con-tau 0.3
has "$T/err" "--con-tau needs --con-weight" "the orphan flag is named"
expect 2 "--rel-weight without anchors" -- "$ECR" train --data x --model tiny --out "$T/o" --rel-weight 0.5
has "$T/err" "--rel-weight needs --anchors" "the term rel needs is named"
expect 2 "resume with another rel weight" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SSET[@]}" \
    --steps 8 --tokens-per-step 256 --threads 1 --quiet --anchors "$T/anchors.safetensors" --rel-weight 0.4 \
    --con-weight 0.2 --con-tau 0.3 --orth-weight 0.1 --out "$T/codes" --resume
has "$T/err" "option 'rel_weight' was 0.5 in the checkpoint, now 0.4" "the changed option is named"

# ---- multi-resolution codes: further anchor sets (K 2 and 8) beside the K = 4 ones ---------------
for k in 2 8; do
    expect 0 "anchors K=$k" -- "$ECR" anchors --emb "$T/teacher.npy" --data "$T/small.safetensors" --k $k \
        --out "$T/anchors$k.safetensors" --quiet
done
expect 0 "train with mres" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SSET[@]}" \
    --steps 4 --tokens-per-step 256 --threads 1 --save-every 2 --anchors "$T/anchors.safetensors" \
    --mres-anchors "$T/anchors2.safetensors,$T/anchors8.safetensors" --mres-weight 0.3 --out "$T/mres"
has "$T/err" "train: mres 0.3 x the sum of ECR's KL to K = 2, K = 8 further anchors" "the start line names the sets"
"$PY" - "$T" <<'EOF' && ok || bad "the mres log, run.json or metadata do not add up"
import json, struct, sys
d = sys.argv[1]
rs = [json.loads(l) for l in open(f"{d}/mres/log.jsonl") if '"loss"' in l]
assert len(rs) == 4
for r in rs:
    want = r["loss"] + 0.05 * r["ecr"] + r["rel"] + r["orth"] + 0.3 * r["mres"]
    assert r["mres"] > 0 and abs(r["total"] - want) < 1e-5 * abs(want), (r, want)
run = json.load(open(f"{d}/mres/run.json"))
assert run["method"] == "ecr+rel+orth+mres" and run["mres_weight"] == 0.3, run
assert run["mres_anchors"].endswith("anchors2.safetensors," + d + "/anchors8.safetensors"), run
b = open(f"{d}/mres/model.safetensors", "rb").read()
meta = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])["__metadata__"]
assert meta["mres_k"] == "2,8" and abs(float(meta["mres_weight"]) - 0.3) < 1e-7 and len(meta["mres_hash"]) == 16, meta
EOF
expect 0 "resume the mres run to 6 steps" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SSET[@]}" \
    --steps 6 --tokens-per-step 256 --threads 1 --quiet --anchors "$T/anchors.safetensors" \
    --mres-anchors "$T/anchors2.safetensors,$T/anchors8.safetensors" --mres-weight 0.3 --out "$T/mres" --resume
expect 2 "resume with other mres anchors" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SSET[@]}" \
    --steps 8 --tokens-per-step 256 --threads 1 --quiet --anchors "$T/anchors.safetensors" \
    --mres-anchors "$T/anchors8.safetensors,$T/anchors2.safetensors" --mres-weight 0.3 --out "$T/mres" --resume
has "$T/err" "mres_hash" "the changed anchor sets are named"
expect 2 "--mres-anchors without anchors" -- "$ECR" train --data x --model tiny --out "$T/o" \
    --mres-anchors "$T/anchors2.safetensors"
has "$T/err" "--mres-anchors needs --anchors" "the term mres needs is named"
expect 0 "anchors of fewer texts" -- "$ECR" anchors --emb "$T/fewer.npy" --data "$T/fewer.safetensors" --k 2 \
    --out "$T/anchors_fewer.safetensors" --quiet
expect 2 "mres anchors of another data set" -- "$ECR" train --data "$T/small.safetensors" --model tiny \
    "${SSET[@]}" "${RUN[@]}" --anchors "$T/anchors.safetensors" \
    --mres-anchors "$T/anchors2.safetensors,$T/anchors_fewer.safetensors" --out "$T/mres_bad"
has "$T/err" "anchors_fewer.safetensors: codes for" "the file that does not match is named"
one_line "mres anchors of another data set"

# ---- ECR on an intermediate layer too (mid): block 1 of 2 ------------------------------------------
expect 0 "train with mid" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SSET[@]}" --set n_layers=2 \
    "${RUN[@]}" --anchors "$T/anchors.safetensors" --mid-weight 0.5 --out "$T/mid"
"$PY" - "$T" <<'EOF' && ok || bad "the mid log or run.json do not add up"
import json, sys
d = sys.argv[1]
rs = [json.loads(l) for l in open(f"{d}/mid/log.jsonl") if '"loss"' in l]
assert len(rs) == 4
for r in rs:
    want = r["loss"] + 0.05 * r["ecr"] + r["rel"] + r["orth"] + 0.5 * r["mid"]
    assert r["mid"] > 0 and abs(r["total"] - want) < 1e-5 * abs(want), (r, want)
run = json.load(open(f"{d}/mid/run.json"))
assert run["method"] == "ecr+rel+orth+mid" and run["mid_weight"] == 0.5 and run["mid_layer"] == 1, run
EOF
expect 2 "mid on a one-layer model" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SSET[@]}" \
    "${RUN[@]}" --anchors "$T/anchors.safetensors" --mid-weight 0.5 --out "$T/mid1"
has "$T/err" "--mid-layer 1 is outside 1..0" "the layer and the model's depth are named"
expect 2 "--mid-layer alone" -- "$ECR" train --data x --model tiny --out "$T/o" --mid-layer 1
has "$T/err" "--mid-layer needs --anchors" "the orphan flag is named"

# ---- resume keeps the baseline options ---------------------------------------------------------
expect 0 "resume the KD run to 6 steps" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SSET[@]}" \
    --steps 6 --tokens-per-step 256 --threads 1 --quiet --kd "$T/teacher" --out "$T/kd" --resume
if [ "$(steps "$T/kd")" = 6 ]; then ok; else bad "kd after resume: not 6 step records"; fi
expect 2 "resume with another alpha" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SSET[@]}" \
    --steps 8 --tokens-per-step 256 --threads 1 --quiet --kd "$T/teacher" --kd-alpha 0.3 --out "$T/kd" --resume
has "$T/err" "option 'kd_alpha' was 0.5 in the checkpoint, now 0.3" "the changed option is named"
one_line "resume with another alpha"
expect 2 "resume the feat run without --feat" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SSET[@]}" \
    --steps 8 --tokens-per-step 256 --threads 1 --quiet --out "$T/feat" --resume
has "$T/err" "option 'feat_" "the dropped term is named"

# ---- bad inputs: exit 2, one line naming the files, nothing left behind -------------------------
expect 0 "another tokenizer" -- "$ECR" tokenizer train --data "$T/small.jsonl" --vocab-size 300 --out "$T/tok2.json" --quiet
expect 0 "prepare with it" -- "$ECR" prepare --data "$T/small.jsonl" --tokenizer "$T/tok2.json" --out "$T/v300.safetensors" --quiet
expect 2 "--kd teacher of another vocabulary" -- "$ECR" train --data "$T/v300.safetensors" --model tiny "${SSET[@]}" \
    "${RUN[@]}" --kd "$T/teacher" --out "$T/bad1"
has "$T/err" "teacher: the teacher's vocabulary has 320 tokens, but .*v300.safetensors has 300" "vocab mismatch names both"
one_line "vocab mismatch"
gone "$T/bad1" "vocab mismatch"
expect 2 "--kd teacher with shorter rows" -- "$ECR" train --data "$T/small.safetensors" --model tiny \
    --set dim=24 --set n_layers=1 --set n_heads=2 --set hidden_dim=48 --set max_seq_len=128 --seq-len 128 \
    "${RUN[@]}" --kd "$T/teacher" --out "$T/bad2"
has "$T/err" "teacher: the teacher's max_seq_len is 64, shorter than the rows of 128" "max_seq_len is explained"
one_line "teacher max_seq_len"
gone "$T/bad2" "teacher max_seq_len"
expect 1 "--kd folder that does not exist" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SSET[@]}" \
    "${RUN[@]}" --kd "$T/no_teacher" --out "$T/bad3"
has "$T/err" "no_teacher" "the missing teacher is named"
gone "$T/bad3" "missing teacher"
for flag in --feat --rkd; do
    expect 2 "$flag with another row count" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SSET[@]}" \
        "${RUN[@]}" $flag "$T/fewer.npy" --out "$T/bad4"
    has "$T/err" "fewer.npy: 150 rows of teacher vectors, but .*small.safetensors holds 200 texts" "$flag rows name both files"
    one_line "$flag rows"
    gone "$T/bad4" "$flag rows"
done
expect 2 "--anchors and --feat of different dims" -- "$ECR" train --data "$T/small.safetensors" --model tiny \
    "${SSET[@]}" "${RUN[@]}" --anchors "$T/anchors.safetensors" --feat "$T/teacher16.npy" --out "$T/bad5"
has "$T/err" "teacher16.npy: teacher vectors of dim 16, but the anchors .*anchors.safetensors have dim 32" "D mismatch names both"
one_line "D mismatch"
gone "$T/bad5" "D mismatch"
expect 2 "--feat and --rkd of different dims" -- "$ECR" train --data "$T/small.safetensors" --model tiny \
    "${SSET[@]}" "${RUN[@]}" --feat "$T/teacher.npy" --rkd "$T/teacher16.npy" --out "$T/bad6"
has "$T/err" "teacher16.npy: teacher vectors of dim 16, but ecr_dim is 32" "feat/rkd mismatch"
gone "$T/bad6" "feat/rkd D mismatch"
expect 2 "--feat with a NaN" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SSET[@]}" "${RUN[@]}" \
    --feat "$T/nan.npy" --out "$T/bad7"
has "$T/err" "nan.npy: row 7 column 3 is not finite" "the NaN is located"
gone "$T/bad7" "NaN vectors"
if find "$T" -name '*.tmp*' | grep -q .; then bad "temporary files left behind"; else ok; fi

cli_done
