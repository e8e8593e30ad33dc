#!/usr/bin/env bash
# cli_limits.sh — inputs that claim or hold absurd sizes get a one-line exit-2 error naming
# the file, well before memory runs out: a JSONL line beyond 64 MiB (corpus and log), a .npy
# header that claims 10^12 rows, a tokenizer.json beyond 64 MiB or with more merges than
# tokens, a model config whose dimensions multiply past 2^32 parameters.
set -u
. "$(dirname "$0")/cli_lib.sh"

PY=python3
# runs a command under a 2 GiB address-space limit: an attempt to allocate the claimed
# size fails the test instead of the machine. Not under AddressSanitizer, whose shadow
# memory alone is larger (its allocator refuses sizes beyond RAM by itself).
if ldd "$ECR" 2>/dev/null | grep -q libasan; then limited() { "$@"; }
else limited() { (ulimit -v 2097152 && "$@"); }; fi
one_line() { if [ "$(wc -l <"$T/err")" = 1 ]; then ok; else bad "$1: not one line: $(head -c 300 "$T/err")"; fi; }

# ---- a JSONL line of 65 MiB ------------------------------------------------------------------
{
    echo '{"text": "a short one"}'
    printf '{"text": "'
    head -c $((65 << 20)) /dev/zero | tr '\0' a
    echo '"}'
} >"$T/long.jsonl"
expect 2 "prepare a corpus with a 65 MiB line" -- limited "$ECR" prepare --data "$T/long.jsonl" \
    --tokenizer "$ROOT/teacher/model/tokenizer.json" --out "$T/long.safetensors" --quiet
has_fixed "$T/err" "long.jsonl:2: line longer than 64 MiB" "the file and line are named"
one_line "long line"
if [ -e "$T/long.safetensors" ]; then bad "output written for a refused corpus"; else ok; fi
expect 2 "tokenizer train on it" -- limited "$ECR" tokenizer train --data "$T/long.jsonl" --vocab-size 300 \
    --out "$T/tok.json" --quiet
has_fixed "$T/err" "long.jsonl:2: line longer than 64 MiB" "tokenizer train names the line"
# a training log with such a line, as ecr eval --log reads it
{
    echo '{"step":1,"loss":5.0,"lr":0.001,"grad_norm":1.0,"clipped":false}'
    printf '{"step":2,"note":"'
    head -c $((65 << 20)) /dev/zero | tr '\0' b
    echo '"}'
} >"$T/log.jsonl"
expect 2 "eval --log on a log with a 65 MiB line" -- limited "$ECR" eval --log "$T/log.jsonl"
has_fixed "$T/err" "log.jsonl:2: line longer than 64 MiB" "the log's line is named"
rm -f "$T/long.jsonl" "$T/log.jsonl"

# ---- a .npy that claims 10^12 rows -----------------------------------------------------------
$PY - "$T/big.npy" <<'EOF'
import struct, sys
h = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 384), }"
h += " " * (63 - (10 + len(h)) % 64) + "\n"
open(sys.argv[1], "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + bytes(64))
EOF
expect 2 "anchors from a .npy claiming 10^12 rows" -- limited "$ECR" anchors --emb "$T/big.npy" --out "$T/a.safetensors" --quiet
has_fixed "$T/err" "big.npy: data is 64 bytes, expected" "the short data is named"
one_line "big npy"
expect 2 "inspect it" -- limited "$ECR" inspect "$T/big.npy"

# ---- tokenizer.json: beyond 64 MiB, more merges than tokens ----------------------------------
$PY - "$ROOT/teacher/model/tokenizer.json" "$T" <<'EOF'
import json, sys
t = json.load(open(sys.argv[1]))
out = sys.argv[2]
m = dict(t); m["model"] = dict(t["model"])
m["model"]["merges"] = t["model"]["merges"] * 3          # more merges than tokens
json.dump(m, open(out + "/many_merges.json", "w"))
with open(out + "/huge.json", "w") as f:                 # 65 MiB: padding before the object's end
    s = json.dumps(t)
    f.write(s[:-1] + ', "pad": "' + "x" * (65 << 20) + '"}')
EOF
expect 2 "a tokenizer with more merges than tokens" -- limited "$ECR" tokenizer encode --tokenizer "$T/many_merges.json" </dev/null
has "$T/err" "many_merges.json: model.merges: [0-9]* merges for a vocabulary of" "the merges are named"
expect 2 "a 65 MiB tokenizer.json" -- limited "$ECR" tokenizer encode --tokenizer "$T/huge.json" </dev/null
has_fixed "$T/err" "huge.json: 65 MiB, larger than the 64 MiB" "the size is named"
one_line "huge tokenizer"
rm -f "$T/huge.json"

# ---- a config whose dimensions multiply past 2^32 parameters ---------------------------------
head -n 50 "$ROOT/build/data/lo10/valid.jsonl" >"$T/small.jsonl"
"$ECR" prepare --data "$T/small.jsonl" --tokenizer "$ROOT/teacher/model/tokenizer.json" --out "$T/small.safetensors" \
    --quiet || bad "could not prepare the data"
expect 2 "train with absurd dimensions" -- limited "$ECR" train --data "$T/small.safetensors" --model tiny \
    --set dim=65536 --set n_heads=64 --set n_layers=1024 --out "$T/m"
has "$T/err" "parameters (dim 65536, 1024 layers" "the parameter count is named"
mkdir -p "$T/absurd"
cp "$ROOT/teacher/model/"{config.json,tokenizer.json,model.safetensors} "$T/absurd/"
$PY - "$T/absurd/config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c.update(hidden_size=65536, num_attention_heads=64, num_key_value_heads=64, intermediate_size=1048576,
         num_hidden_layers=1024)
json.dump(c, open(sys.argv[1], "w"))
EOF
expect 2 "generate from a folder with absurd dimensions" -- limited "$ECR" generate --model "$T/absurd" --prompt hi
has "$T/err" "absurd/config.json: config: .* parameters" "the config file is named"
one_line "absurd config"

cli_done
