#!/usr/bin/env bash
# cli_inspect.sh — `ecr inspect` on safetensors, .npy and tokenizer.json files made here
# by python3 (independently of ecr's own writers), plus malformed and missing files.
# Exit codes checked: 0 ok, 2 bad file / bad usage, 1 unreadable (missing, directory).
set -u
. "$(dirname "$0")/cli_lib.sh"


# run WANT_RC ARGS...: runs ecr inspect, keeps stdout/stderr in $T/out, $T/err.
run() {
    local want=$1; shift
    "$ECR_BIN" inspect "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    if [ "$rc" -eq "$want" ]; then ok; else bad "inspect $* exited $rc, wanted $want; stderr: $(head -c 300 "$T/err")"; fi
    if [ "$want" -ne 0 ]; then   # failures: exactly one line on stderr, "ecr ..."
        if [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q '^ecr' "$T/err"; then ok; else bad "inspect $*: stderr not one 'ecr' line: $(cat "$T/err")"; fi
    fi
}
out_has() { if grep -qF -- "$1" "$T/out"; then ok; else bad "stdout lacks '$1':"$'\n'"$(cat "$T/out")"; fi; }
err_has() { if grep -qF -- "$1" "$T/err"; then ok; else bad "stderr lacks '$1': $(cat "$T/err")"; fi; }

# A python3 for making the files (any python3 works; numpy is used when present).
PY=""
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import struct, json' 2>/dev/null; then PY=$p; break; fi
done
if [ -z "$PY" ]; then echo "cli_inspect: python3 not found" >&2; exit 1; fi
NUMPY_PY=""
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import numpy' 2>/dev/null; then NUMPY_PY=$p; break; fi
done

"$PY" - "$T" <<'EOF'
import json, struct, sys, os
d = sys.argv[1]

def st(path, entries, meta=None, data=b"", raw_header=None):
    """A safetensors file laid out like other writers do: compact JSON, no padding."""
    h = {}
    if meta is not None:
        h["__metadata__"] = meta
    h.update(entries)
    hb = raw_header if raw_header is not None else json.dumps(h, separators=(",", ":")).encode()
    with open(os.path.join(d, path), "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + data)

long_value = "x" * 200
good = {"flag": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
        "model.w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [1, 25]},
        "tok": {"dtype": "I64", "shape": [4], "data_offsets": [25, 57]}}
data = bytes([1]) + struct.pack("<6f", 1, 2, 3, 4, 5, 6) + struct.pack("<4q", 0, 1, 2, 3)
st("good.safetensors", good, {"format": "pt", "note": long_value}, data)
st("noext", good, {"format": "pt"}, data)
overlap = {"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
           "b": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]}}
st("overlap.safetensors", overlap, None, bytes(3))
st("dtype.safetensors", {"a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}}, None, bytes(8))
st("trunc.safetensors", good, None, data[:-5])
st("json.safetensors", {}, None, b"", raw_header=b"{\"a\":")
open(os.path.join(d, "empty.safetensors"), "wb").close()

def npy(path, descr, fortran, shape, nbytes, major=1):
    """A .npy file written by hand (NumPy layout, header padded to 64 bytes)."""
    dic = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape)
    pre = 10 if major == 1 else 12
    hl = len(dic) + 1
    hl += (64 - (pre + hl) % 64) % 64
    hdr = dic.ljust(hl - 1) + "\n"
    lenb = struct.pack("<H", hl) if major == 1 else struct.pack("<I", hl)
    with open(os.path.join(d, path), "wb") as f:
        f.write(b"\x93NUMPY" + bytes([major, 0]) + lenb + hdr.encode() + bytes(nbytes))

npy("hand.npy", "<f4", "False", "(3, 4)", 48)
npy("v2.npy", "<f4", "False", "(5,)", 20, major=2)
npy("f8.npy", "<f8", "False", "(2, 2)", 32)
npy("fortran.npy", "<f4", "True", "(2, 2)", 16)
npy("trunc.npy", "<f4", "False", "(3, 4)", 40)
npy("emb.bin", "<f4", "False", "(2, 2)", 16)

tok = {"version": "1.0", "truncation": None, "padding": None,
       "added_tokens": [
           {"id": 0, "content": "<|endoftext|>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True},
           {"id": 4, "content": "ab", "single_word": False, "lstrip": False, "rstrip": False, "normalized": True, "special": False}],
       "normalizer": None, "pre_tokenizer": {"type": "ByteLevel"},
       "model": {"type": "BPE", "dropout": None, "unk_token": None,
                 "vocab": {"<|endoftext|>": 0, "a": 1, "b": 2, "c": 3},
                 "merges": ["a b", ["b", "c"]]}}
with open(os.path.join(d, "tokenizer.json"), "w") as f:
    json.dump(tok, f)
with open(os.path.join(d, "notjson.json"), "w") as f:
    f.write('{"model": {"type": "BPE", "vocab": {"a": 1,}}}')
with open(os.path.join(d, "nomodel.json"), "w") as f:
    json.dump({"version": "1.0"}, f)
with open(os.path.join(d, "badadded.json"), "w") as f:
    json.dump({"model": {"type": "BPE", "vocab": {}}, "added_tokens": [{"id": -3, "content": "x"}]}, f)
with open(os.path.join(d, "hello.txt"), "w") as f:
    f.write("hello world\n")
EOF

# ---- safetensors -----------------------------------------------------------------------
run 0 "$T/good.safetensors"
out_has "good.safetensors: safetensors, 3 tensors, 11 elements, 57 B of data"
out_has "metadata (2):"
out_has "format  pt"
out_has "... (200 bytes)"
out_has "model.w  F32    [2, 3]  24 B"
out_has "flag     U8     [1]     1 B"
out_has "tok      I64    [4]     32 B"
if grep -q "x\{73\}" "$T/out"; then bad "long metadata value not cut"; else ok; fi
run 0 "$T/noext"                     # recognised by content
out_has "noext: safetensors, 3 tensors"
run 2 "$T/overlap.safetensors"
err_has "overlap.safetensors: tensor 'b': data_offsets [1, 3] overlap tensor 'a' [0, 2]"
run 2 "$T/dtype.safetensors"
err_has "dtype.safetensors: tensor 'a': unknown dtype 'F64'"
run 2 "$T/trunc.safetensors"
err_has "trunc.safetensors: tensor 'tok': data_offsets [25, 57] extend past the data region (52 bytes)"
run 2 "$T/json.safetensors"
err_has "json.safetensors: header byte"
run 2 "$T/empty.safetensors"
err_has "empty.safetensors: file is 0 bytes"

# ---- .npy -------------------------------------------------------------------------------
run 0 "$T/hand.npy"
out_has "hand.npy: npy, dtype <f4, shape (3, 4), fortran_order False, 12 elements"
if grep -q "note:" "$T/out"; then bad "readable npy flagged"; else ok; fi
run 0 "$T/v2.npy"
out_has "shape (5,)"
run 0 "$T/f8.npy"
out_has "dtype <f8, shape (2, 2)"
out_has "note: ecr reads only '<f4'"
run 0 "$T/fortran.npy"
out_has "fortran_order True"
run 2 "$T/trunc.npy"
err_has "trunc.npy: data is 40 bytes, expected 48 for shape (3, 4) '<f4' (truncated)"
run 0 "$T/emb.bin"                   # recognised by content
out_has "emb.bin: npy, dtype <f4, shape (2, 2)"
if [ -n "$NUMPY_PY" ]; then          # files written by NumPy itself
    "$NUMPY_PY" -c "import numpy as np, sys; np.save(sys.argv[1], np.arange(12, dtype='<f4').reshape(3, 4)); np.save(sys.argv[2], np.zeros((2, 3, 4), dtype='<f2'))" \
        "$T/np.npy" "$T/np3.npy"
    run 0 "$T/np.npy"
    out_has "dtype <f4, shape (3, 4), fortran_order False, 12 elements"
    run 0 "$T/np3.npy"
    out_has "dtype <f2, shape (2, 3, 4)"
else
    echo "cli_inspect: numpy not found; NumPy-written files skipped" >&2
fi

# ---- tokenizer.json --------------------------------------------------------------------
run 0 "$T/tokenizer.json"
out_has "tokenizer.json: tokenizer.json, model BPE"
out_has "vocab size: 5 (4 in model.vocab + 1 added tokens not in it)"
out_has "merges: 2"
out_has "added tokens (2):"
out_has "0  \"<|endoftext|>\"  special"
out_has "4  \"ab\""
run 2 "$T/notjson.json"
err_has "notjson.json: byte"
err_has "not valid JSON"
run 2 "$T/nomodel.json"
err_has "nomodel.json: model: missing"
run 2 "$T/badadded.json"
err_has "badadded.json: added_tokens[0]: id is not a non-negative integer"

# ---- unreadable, unrecognised, usage ---------------------------------------------------
run 1 "$T/missing.safetensors"
err_has "missing.safetensors: cannot open"
run 1 "$T/missing.bin"
err_has "missing.bin: cannot open"
run 1 "$T"
err_has "is a directory"
run 2 "$T/hello.txt"
err_has "hello.txt: not a safetensors, .npy or tokenizer.json file"
run 2
run 2 "$T/good.safetensors" "$T/hand.npy"
run 2 --bogus "$T/good.safetensors"
run 0 --quiet "$T/good.safetensors"
"$ECR_BIN" inspect --help >"$T/out" 2>"$T/err" && ok || bad "inspect --help exit code"
out_has "usage: ecr inspect FILE"
"$ECR_BIN" inspect --version >"$T/out" 2>"$T/err" && ok || bad "inspect --version exit code"
out_has "ecr 0."

cli_done
