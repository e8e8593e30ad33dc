#!/usr/bin/env bash
# cli_eval.sh — `ecr eval` geometry, teacher, anchors and --log: exit codes, messages, the
# JSON schema, and values known by construction (a teacher that is the model's own
# embeddings gives CKA 1 and k-NN overlap 1; planted loss spikes are counted exactly).
# The LM part of eval is covered by cli_train.sh.
set -u
. "$(dirname "$0")/cli_lib.sh"

# pycheck DESCRIPTION FILE.json <<'EOF' ... (python, stdlib only; m = the parsed JSON)
pycheck() {
    local what=$1 file=$2
    if python3 -c "import json, math, sys
m = json.load(open(sys.argv[1]))
exec(sys.stdin.read())" "$file" 2>"$T/pyerr"; then ok; else bad "$what: $(tail -n 3 "$T/pyerr")"; fi
}

# ---- usage and bad input -----------------------------------------------------------------
expect 0 "eval --help" -- "$ECR" eval --help
has "$T/out" "usage: ecr eval" "--help prints usage on stdout"
has "$T/out" "--teacher-emb" "--help names --teacher-emb"
has "$T/out" "--log FILE" "--help names --log"
has "$T/out" '"geometry"' "--help sketches the JSON"
expect 2 "eval --model without --data" -- "$ECR" eval --model "$T/m"
expect 2 "eval --log with --model but no --data" -- "$ECR" eval --log "$T/x.jsonl" --model "$T/m"
expect 2 "eval --teacher-emb without a model" -- "$ECR" eval --log "$T/x.jsonl" --teacher-emb "$T/t.npy"
expect 1 "eval --log on a missing file" -- "$ECR" eval --log "$T/missing.jsonl"
has "$T/err" "missing.jsonl" "the missing log is named"

# ---- stability from a synthetic log --------------------------------------------------------
# 300 steps: loss 2 +- 0.001 (alternating), spikes planted at steps 120 and 200 (+1), one in
# the first 50 steps (step 10: cannot count); grad_norm alternates 1 and 3 (CV 0.5); every
# 5th step clipped; a validation record in between.
awk 'BEGIN {
    for (s = 1; s <= 300; s++) {
        loss = 2 + (s % 2 ? 0.001 : -0.001);
        if (s == 10 || s == 120 || s == 200) loss += 1;
        printf("{\"step\":%d,\"loss\":%.6f,\"lr\":0.001,\"grad_norm\":%d,\"clipped\":%s,\"tokens\":%d}\n",
               s, loss, s % 2 ? 1 : 3, s % 5 == 0 ? "true" : "false", 100 * s);
        if (s == 150) printf("{\"step\":150,\"val_loss\":2.5,\"val_bpb\":1.2,\"val_tokens\":1000}\n");
    }
}' >"$T/log.jsonl"
expect 0 "eval --log" -- "$ECR" eval --log "$T/log.jsonl" --json "$T/stab.json"
has "$T/out" "training stability" "eval --log prints the stability table"
has "$T/out" "^loss spikes  *2 " "the table shows 2 spikes"
pycheck "stability JSON" "$T/stab.json" <<'EOF'
assert list(m) == ["stability"], list(m)
s = m["stability"]
assert s["steps"] == 300 and s["first_step"] == 1 and s["last_step"] == 300, s
assert s["spikes"] == 2, s
assert abs(s["spikes_per_1k_steps"] - 2000 / 300) < 1e-9, s
assert abs(s["grad_norm_cv"] - 0.5) < 1e-12 and abs(s["grad_norm_mean"] - 2) < 1e-12, s
assert s["clipped_steps"] == 60 and abs(s["clipped_share"] - 0.2) < 1e-12, s
assert s["final_val_loss"] == 2.5, s
EOF
sed '3s/.*/{"step":3,"loss":2.0,"grad_norm":1}/' "$T/log.jsonl" >"$T/badlog.jsonl"
expect 2 "eval --log on a record without 'clipped'" -- "$ECR" eval --log "$T/badlog.jsonl"
has "$T/err" "badlog.jsonl:3: field 'clipped'" "the bad log line is named"
if [ -e "$T/stab2.json" ]; then bad "a failed eval wrote its JSON"; else ok; fi

# ---- a tiny model with an ECR projection ------------------------------------------------------
VALID="$ROOT/build/data/lo10/valid.jsonl"
if [ ! -f "$VALID" ]; then
    bad "missing $VALID (make data)"
    echo "cli_eval: $pass passed, $fail failed"
    exit 1
fi
head -n 300 "$VALID" >"$T/small.jsonl"
head -n 200 "$VALID" >"$T/other.jsonl"
expect 0 "tokenizer train" -- "$ECR" tokenizer train --data "$T/small.jsonl" --vocab-size 320 --out "$T/tok.json" --quiet
expect 0 "prepare" -- "$ECR" prepare --data "$T/small.jsonl" --tokenizer "$T/tok.json" --out "$T/small.safetensors" --quiet
expect 0 "prepare other" -- "$ECR" prepare --data "$T/other.jsonl" --tokenizer "$T/tok.json" --out "$T/other.safetensors" --quiet
SET=(--set dim=32 --set n_layers=1 --set n_heads=2 --set hidden_dim=64 --set max_seq_len=64)
expect 0 "train with a projection" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SET[@]}" \
    --set ecr_dim=16 --steps 6 --tokens-per-step 256 --threads 2 --out "$T/m" --quiet
expect 0 "train without a projection" -- "$ECR" train --data "$T/small.safetensors" --model tiny "${SET[@]}" \
    --steps 2 --tokens-per-step 256 --threads 2 --out "$T/plain" --quiet
# the model's own embeddings as teachers: u (16 dims) and h (32 dims)
expect 0 "embed u" -- "$ECR" embed --model "$T/m" --data "$T/small.safetensors" --out "$T/u.npy" --quiet
expect 0 "embed h" -- "$ECR" embed --model "$T/m" --data "$T/small.safetensors" --out "$T/h.npy" --raw --quiet
expect 0 "embed other" -- "$ECR" embed --model "$T/m" --data "$T/other.safetensors" --out "$T/u_other.npy" --quiet
expect 0 "anchors on u" -- "$ECR" anchors --emb "$T/u.npy" --k 8 --out "$T/anchors.safetensors" --quiet
expect 0 "anchors on h" -- "$ECR" anchors --emb "$T/h.npy" --k 8 --out "$T/anchors_h.safetensors" --quiet
expect 0 "anchors on other texts" -- "$ECR" anchors --emb "$T/u_other.npy" --k 8 --out "$T/anchors_other.safetensors" --quiet

# everything on; the teacher is u itself
expect 0 "eval with teacher and anchors" -- "$ECR" eval --model "$T/m" --data "$T/small.safetensors" \
    --teacher-emb "$T/u.npy" --anchors "$T/anchors.safetensors" --log "$T/m/log.jsonl" --json "$T/all.json" --threads 2
has "$T/out" "^geometry (300 texts; h: 32 dims, u: 16 dims; teacher: 16 dims; 8 anchors)" "geometry table header"
has "$T/out" "^effective rank " "effective rank row"
has "$T/out" "^anchor agreement " "anchor agreement row"
has "$T/out" "^de  " "per-language rows"
has "$T/out" "^all " "the LM table is kept"
has "$T/out" "training stability" "--log with a model adds stability"
has "$T/err" "geometry of u" "progress names the geometry passes"
pycheck "geometry JSON (teacher = u)" "$T/all.json" <<'EOF'
assert set(m) == {"model", "data", "texts", "precision", "lm", "geometry", "pca", "stability"}, list(m)
assert m["precision"] in ("fp32", "bf16"), m["precision"]
p = m["pca"]
assert p["space"] == "u" and p["texts"] == 300, (p["space"], p["texts"])
assert all(len(p[k]) == 300 for k in ("x", "y", "lang", "label")), p.keys()
assert 0 < p["explained"][1] <= p["explained"][0] <= 1, p["explained"]
assert p["langs"][0] == "en" and len(p["langs"]) == 10 and set(p["lang"]) == set(range(10)), p["langs"]
assert all(0 <= b < len(p["labels"]) for b in p["label"])
assert abs(sum(p["x"]) / 300) < 1e-3 and abs(sum(p["y"]) / 300) < 1e-3  # centred (all texts shown)
assert m["texts"] == 300 and m["lm"]["overall"]["texts"] == 300
g = m["geometry"]
assert g["texts"] == 300 and g["english"] == "en", g
assert g["teacher"]["dim"] == 16 and g["teacher"]["file"].endswith("u.npy"), g["teacher"]
assert g["anchors"] == {"file": g["anchors"]["file"], "k": 8, "dim": 16, "codes": "stored"}, g["anchors"]
keys = {"dim", "effective_rank", "anisotropy", "silhouette", "p1", "label_transfer", "cka",
        "knn_overlap10", "anchor_agreement", "seconds"}
for name, dim in (("h", 32), ("u", 16)):
    x = g[name]
    assert set(x) == keys, (name, sorted(x))
    assert x["dim"] == dim
    assert 1 <= x["effective_rank"] <= dim, x
    assert -1 <= x["anisotropy"] <= 1 and -1 <= x["silhouette"] <= 1, x
    for k in ("p1", "label_transfer"):
        per = x[k]["per_lang"]
        assert set(per) == {"de", "fr", "es", "it", "pt_BR", "ru", "pl", "ja", "zh_CN"}, per
        assert all(0 <= v <= 1 for v in per.values())
        assert abs(x[k]["mean"] - sum(per.values()) / len(per)) < 1e-12
    assert 0 <= x["cka"] <= 1 + 1e-9 and 0 <= x["knn_overlap10"] <= 1
u, h = g["u"], g["h"]
assert abs(u["cka"] - 1) < 1e-6, u["cka"]
assert u["knn_overlap10"] > 0.99, u["knn_overlap10"]
assert h["cka"] < 0.9999, h["cka"]
assert h["anchor_agreement"] is None and 0 <= u["anchor_agreement"] <= 1, (h, u)
assert m["stability"]["steps"] == 6
EOF
# the same run again gives the same numbers (seconds aside)
expect 0 "eval again" -- "$ECR" eval --model "$T/m" --data "$T/small.safetensors" \
    --teacher-emb "$T/u.npy" --anchors "$T/anchors.safetensors" --json "$T/again.json" --threads 2 --quiet
pycheck "eval is deterministic" "$T/again.json" <<'EOF'
a = json.load(open(sys.argv[1].replace("again.json", "all.json")))
for x in (a, m):
    x.pop("stability", None)
    for k in ("h", "u"):
        x["geometry"][k].pop("seconds")
assert a == m
EOF

# teacher = h: CKA of h is 1; codes of the u-anchors are computed from... nothing (dims differ)
expect 0 "eval with the raw teacher" -- "$ECR" eval --model "$T/m" --data "$T/small.safetensors" \
    --teacher-emb "$T/h.npy" --json "$T/raw.json" --quiet
pycheck "teacher = h" "$T/raw.json" <<'EOF'
g = m["geometry"]
assert abs(g["h"]["cka"] - 1) < 1e-6 and g["h"]["knn_overlap10"] > 0.99, g["h"]
assert g["anchors"] is None and g["u"]["anchor_agreement"] is None
EOF

# held-out texts: anchors fitted on other texts; codes computed from the teacher
expect 0 "eval with anchors of other texts and a teacher" -- "$ECR" eval --model "$T/m" \
    --data "$T/small.safetensors" --teacher-emb "$T/u.npy" --anchors "$T/anchors_other.safetensors" \
    --json "$T/computed.json" --quiet
has "$T/out" "^note: anchor codes: computed" "the computed codes are noted"
pycheck "codes computed" "$T/computed.json" <<'EOF'
g = m["geometry"]
assert g["anchors"]["codes"] == "computed" and 0 <= g["u"]["anchor_agreement"] <= 1, g["anchors"]
assert any("computed" in n for n in g["notes"]), g["notes"]
EOF
expect 0 "eval with anchors of other texts, no teacher" -- "$ECR" eval --model "$T/m" \
    --data "$T/small.safetensors" --anchors "$T/anchors_other.safetensors" --json "$T/skip.json" --quiet
has "$T/out" "^note: anchor agreement skipped" "the skip is noted on stdout"
pycheck "agreement skipped" "$T/skip.json" <<'EOF'
g = m["geometry"]
assert g["anchors"]["codes"] is None and g["u"]["anchor_agreement"] is None, g
assert g["teacher"] is None and g["u"]["cka"] is None and g["h"]["knn_overlap10"] is None
assert any("200 texts" in n and "300" in n for n in g["notes"]), g["notes"]
EOF
# stored codes used without a teacher when the counts match; --max-texts keeps the first N
expect 0 "eval --max-texts 100 with stored codes" -- "$ECR" eval --model "$T/m" --data "$T/small.safetensors" \
    --anchors "$T/anchors.safetensors" --teacher-emb "$T/u.npy" --max-texts 100 --json "$T/head.json" --quiet
pycheck "--max-texts" "$T/head.json" <<'EOF'
assert m["texts"] == 100 and m["lm"]["overall"]["texts"] == 100 and m["geometry"]["texts"] == 100
g = m["geometry"]
assert g["anchors"]["codes"] == "stored" and abs(g["u"]["cka"] - 1) < 1e-6, g
EOF

# a model without a projection: u is null; anchors are noted and skipped
expect 0 "eval of a model without a projection" -- "$ECR" eval --model "$T/plain" --data "$T/small.safetensors" \
    --anchors "$T/anchors.safetensors" --json "$T/plain.json" --quiet
pycheck "no projection" "$T/plain.json" <<'EOF'
g = m["geometry"]
assert g["u"] is None and g["h"]["dim"] == 32, g
assert any("no ECR projection" in n for n in g["notes"]), g["notes"]
EOF

# refusals
expect 2 "a teacher with other rows" -- "$ECR" eval --model "$T/m" --data "$T/small.safetensors" \
    --teacher-emb "$T/u_other.npy" --json "$T/refused.json"
has "$T/err" "u_other.npy: 200 rows, but .*small.safetensors holds 300 texts" "the row mismatch names both files"
if [ -e "$T/refused.json" ]; then bad "a refused eval wrote its JSON"; else ok; fi
expect 2 "anchors of another dimension" -- "$ECR" eval --model "$T/m" --data "$T/small.safetensors" \
    --anchors "$T/anchors_h.safetensors"
has "$T/err" "anchors_h.safetensors: anchors of 32 dims, but the model's ECR projection has 16" "the dim mismatch is named"
printf 'not a npy file' >"$T/garbage.npy"
expect 2 "a garbage teacher" -- "$ECR" eval --model "$T/m" --data "$T/small.safetensors" --teacher-emb "$T/garbage.npy"
has "$T/err" "garbage.npy" "the garbage teacher is named"

cli_done
