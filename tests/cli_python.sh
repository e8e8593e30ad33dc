#!/usr/bin/env bash
# cli_python.sh — the Python module (python/ecr over libecr.so): trains two tiny models and
# runs tests/test_python.py against them and the binary (see its header), then the README's
# Python example (the ```python block under "### Python") on a model folder. Uses Debian's
# python3 with python3-numpy; skipped (a SKIP line, not a failure) without them. The
# library is the one beside ECR_BIN (build/libecr.so; build-san/libecr.so under SAN=1,
# loaded with the sanitizers' runtimes preloaded).
set -u
. "$(dirname "$0")/cli_lib.sh"
LIB=$(dirname "$ECR_BIN")/libecr.so
PY=""
for p in /usr/bin/python3 python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import numpy, ctypes' 2>/dev/null; then PY=$p; break; fi
done
if [ -z "$PY" ]; then
    echo "cli_python: SKIP: no python3 with numpy (apt-get install python3 python3-numpy)"
    exit 0
fi
[ -f "$LIB" ] || { bad "$LIB missing (make)"; cli_done; exit 1; }
VALID="$ROOT/build/data/lo10/valid.jsonl"
[ -f "$VALID" ] || { bad "missing $VALID (make data)"; cli_done; exit 1; }
export ECR_LIB=$LIB ECR_BIN ECR_TEST_DIR=$T PYTHONPATH=$ROOT/python${PYTHONPATH:+:$PYTHONPATH}
# A sanitized library needs the sanitizers' runtimes loaded first; the interpreter's own
# allocations at exit are not ours to report.
if nm -D "$LIB" 2>/dev/null | grep -q __asan_init; then
    export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
    export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
fi

head -n 300 "$VALID" >"$T/t.jsonl"
"$PY" -c 'import json, sys
for l in open(sys.argv[1]): print(json.loads(l)["text"])' "$T/t.jsonl" >"$T/t.txt"
M=(--model tiny --set dim=32 --set n_layers=1 --set n_heads=2 --set hidden_dim=64 --set max_seq_len=64 --steps 20
   --tokens-per-step 1024 --lr 5e-3 --threads 1 --quiet)
"$ECR" tokenizer train --data "$T/t.jsonl" --vocab-size 400 --out "$T/tok.json" --quiet &&
"$ECR" prepare --data "$T/t.jsonl" --tokenizer "$T/tok.json" --out "$T/t.st" --quiet &&
"$ECR" train --data "$T/t.st" "${M[@]}" --set ecr_dim=12 --out "$T/m" &&
"$ECR" train --data "$T/t.st" "${M[@]}" --out "$T/plain" || { bad "setup failed"; cli_done; exit 1; }
mkdir -p "$T/bert" "$T/notok"
printf '{"model_type": "bert", "hidden_size": 32}\n' >"$T/bert/config.json"
cp "$T/m/model.safetensors" "$T/m/tokenizer.json" "$T/bert/"
cp "$T/m/config.json" "$T/m/model.safetensors" "$T/notok/"

if "$PY" "$ROOT/tests/test_python.py" >"$T/py.out" 2>&1; then ok; else bad "test_python.py: $(tail -c 3000 "$T/py.out")"; fi
grep '^test_python:' "$T/py.out"

# The README's example, on the model folder m instead of student/.
awk '/^### Python/ { on = 1 } on && /^```python/ { code = 1; next } code && /^```/ { exit } code' "$ROOT/README.md" |
    sed "s|\"student/\"|\"$T/m\"|" >"$T/readme.py"
[ "$(grep -c . "$T/readme.py")" -eq 5 ] && ok || bad "the README's Python example is not five lines: $(cat "$T/readme.py")"
if "$PY" "$T/readme.py" >"$T/readme.out" 2>&1 && "$PY" - "$T/readme.out" <<'PY'
import re, sys
nums = [float(x) for x in re.findall(r"-?\d+\.\d*(?:e[-+]\d+)?", open(sys.argv[1]).read())]
assert len(nums) == 9, nums                         # a 3 x 3 matrix of cosines
assert all(abs(nums[i * 4] - 1) < 1e-5 for i in range(3)), nums
assert all(-1 - 1e-6 <= x <= 1 + 1e-6 for x in nums), nums
PY
then ok; else bad "the README's example: $(cat "$T/readme.out")"; fi

# A missing library is a clear ImportError, not a crash.
ECR_LIB=$T/nope.so "$PY" -c 'import ecr' >"$T/out" 2>&1
[ $? -ne 0 ] && grep -q "ImportError: ecr: ECR_LIB=.*nope.so: no such file" "$T/out" && ok || bad "missing library: $(cat "$T/out")"

cli_done
