#!/usr/bin/env bash
# cli_embed_text.sh — `ecr embed --text`: raw text without a prepare step.
#   - the rows are the bytes of `ecr prepare` + `ecr embed --data` on the same texts, for u
#     and --raw h, from plain lines, JSONL, standard input and a CRLF file;
#   - --format tsv holds the same float32 values, also on stdout (--out -);
#   - bad input: an empty line, invalid UTF-8 and a NUL byte (exit 2 naming FILE:LINE), an
#     empty JSONL "text", a folder that is not a Llama model of ecr's layout (exit 2 naming
#     its config.json), a folder without tokenizer.json, a missing --text file, an
#     unwritable --out (exit 1 before the model runs), bad flag combinations (exit 2); no
#     output and no temporary file left by a failure;
#   - under mpirun (when built with MPI): the bytes of one process; `--text -` refused.
set -u
. "$(dirname "$0")/cli_lib.sh"

PY=""
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1; then PY=$p; break; fi
done
[ -n "$PY" ] || { echo "cli_embed_text: python3 not found" >&2; exit 1; }
VALID="$ROOT/build/data/lo10/valid.jsonl"
[ -f "$VALID" ] || { bad "missing $VALID (make data)"; cli_done; exit 1; }

# 300 texts of lo10 validation (every language), as JSONL and as plain lines
head -n 300 "$VALID" >"$T/t.jsonl"
"$PY" -c 'import json, sys
for l in open(sys.argv[1]):
    t = json.loads(l)["text"]
    assert "\n" not in t and "\r" not in t and t
    print(t)' "$T/t.jsonl" >"$T/t.txt" || bad "texts with newlines in the sample"
sed 's/$/\r/' "$T/t.txt" >"$T/crlf.txt"
R=(--threads 2 --quiet)
"$ECR" tokenizer train --data "$T/t.jsonl" --vocab-size 400 --out "$T/tok.json" --quiet &&
"$ECR" prepare --data "$T/t.jsonl" --tokenizer "$T/tok.json" --out "$T/t.st" --quiet &&
"$ECR" train --data "$T/t.st" --model tiny --set dim=32 --set n_layers=1 --set n_heads=2 --set hidden_dim=64 \
    --set max_seq_len=64 --set ecr_dim=12 --steps 3 --tokens-per-step 512 "${R[@]}" --out "$T/m" ||
    { bad "setup failed"; cli_done; exit 1; }

# ---- help -------------------------------------------------------------------------------------
expect 0 "embed --help" -- "$ECR" embed --help
for f in "--text FILE" --text-format --format tsv "--out FILE" "empty line" "invalid UTF-8" "'-' reads standard input"; do
    has_fixed "$T/out" "$f" "--help names $f"
done

# ---- the same bytes as prepare + embed --data -------------------------------------------------
for raw in "" --raw; do
    n=${raw:-u}
    expect 0 "embed --data $n" -- "$ECR" embed --model "$T/m" --data "$T/t.st" --out "$T/data$n.npy" $raw "${R[@]}"
    expect 0 "embed --text lines $n" -- "$ECR" embed --model "$T/m" --text "$T/t.txt" --out "$T/lines$n.npy" $raw "${R[@]}"
    expect 0 "embed --text jsonl $n" -- "$ECR" embed --model "$T/m" --text "$T/t.jsonl" --out "$T/jsonl$n.npy" $raw "${R[@]}"
    cmp -s "$T/data$n.npy" "$T/lines$n.npy" && ok || bad "$n: --text lines differs from prepare + --data"
    cmp -s "$T/data$n.npy" "$T/jsonl$n.npy" && ok || bad "$n: --text jsonl differs from prepare + --data"
done
expect 0 "embed --text - (stdin)" -- sh -c '"$1" embed --model "$2" --text - --out "$3" --threads 2 --quiet <"$4"' sh \
    "$ECR" "$T/m" "$T/stdin.npy" "$T/t.txt"
cmp -s "$T/datau.npy" "$T/stdin.npy" && ok || bad "--text - differs"
expect 0 "embed --text - --text-format jsonl" -- sh -c '"$1" embed --model "$2" --text - --text-format jsonl --out "$3" --threads 2 --quiet <"$4"' sh \
    "$ECR" "$T/m" "$T/stdinj.npy" "$T/t.jsonl"
cmp -s "$T/datau.npy" "$T/stdinj.npy" && ok || bad "--text - --text-format jsonl differs"
expect 0 "embed a CRLF file" -- "$ECR" embed --model "$T/m" --text "$T/crlf.txt" --out "$T/crlf.npy" "${R[@]}"
cmp -s "$T/datau.npy" "$T/crlf.npy" && ok || bad "a CRLF file's rows differ"
"$ECR" inspect "$T/lines--raw.npy" >"$T/out" 2>&1; has_fixed "$T/out" "(300, 32)" "--raw: 300 x dim"
"$ECR" inspect "$T/linesu.npy" >"$T/out" 2>&1; has_fixed "$T/out" "(300, 12)" "u: 300 x D"

# ---- tsv ----------------------------------------------------------------------------------------
expect 0 "--format tsv" -- "$ECR" embed --model "$T/m" --text "$T/t.txt" --out "$T/u.tsv" --format tsv "${R[@]}"
expect 0 "--format tsv --out -" -- "$ECR" embed --model "$T/m" --text "$T/t.txt" --out - --format tsv "${R[@]}"
cmp -s "$T/out" "$T/u.tsv" && ok || bad "tsv on stdout differs from the file"
"$PY" - "$T/u.tsv" "$T/datau.npy" <<'PY' && ok || bad "tsv values are not the npy's float32 values"
import array, ast, sys
b = open(sys.argv[2], "rb").read()
hl = int.from_bytes(b[8:10], "little")
rows, cols = ast.literal_eval(b[10:10 + hl].decode())["shape"]
a = array.array("f"); a.frombytes(b[10 + hl:])
lines = open(sys.argv[1]).read().split("\n")
assert lines[-1] == "" and len(lines) == rows + 1, len(lines)
t = array.array("f", [float(x) for l in lines[:-1] for x in l.split("\t")])
assert len(t) == rows * cols and t.tobytes() == a.tobytes()
PY

# ---- bad input --------------------------------------------------------------------------------
one_line() { # the failure's stderr is one line starting with "ecr"
    if [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q '^ecr' "$T/err"; then ok; else bad "$1: stderr not one 'ecr' line: $(cat "$T/err")"; fi
}
printf 'first\n\nthird\n' >"$T/empty.txt"
expect 2 "an empty line" -- "$ECR" embed --model "$T/m" --text "$T/empty.txt" --out "$T/x.npy"
one_line "an empty line"; has_fixed "$T/err" "$T/empty.txt:2: empty line" "the empty line is named"
printf 'first\nsecond\nth\xe9ird\n' >"$T/latin1.txt"
expect 2 "invalid UTF-8" -- "$ECR" embed --model "$T/m" --text "$T/latin1.txt" --out "$T/x.npy"
one_line "invalid UTF-8"; has_fixed "$T/err" "$T/latin1.txt:3: invalid UTF-8 at byte 3" "the bad line and byte are named"
printf 'first\nsec\0ond\n' >"$T/nul.txt"
expect 2 "a NUL byte" -- "$ECR" embed --model "$T/m" --text "$T/nul.txt" --out "$T/x.npy"
has_fixed "$T/err" "$T/nul.txt:2: NUL byte at byte 4" "the NUL byte is named"
printf 'ok\n\xff\n' | "$ECR" embed --model "$T/m" --text - --out "$T/x.npy" 2>"$T/err"
[ $? -eq 2 ] && grep -qF "<stdin>:2: invalid UTF-8 at byte 1" "$T/err" && ok || bad "invalid UTF-8 on stdin: $(cat "$T/err")"
printf '{"text": "fine"}\n\n{"text": ""}\n' >"$T/empty.jsonl"
expect 2 "an empty JSONL text" -- "$ECR" embed --model "$T/m" --text "$T/empty.jsonl" --out "$T/x.npy"
has_fixed "$T/err" "$T/empty.jsonl:3: \"text\" is empty" "the empty JSONL text is named"
: >"$T/none.txt"
expect 2 "no texts" -- "$ECR" embed --model "$T/m" --text "$T/none.txt" --out "$T/x.npy"
has_fixed "$T/err" "none.txt: no texts" "an empty file"
expect 1 "a missing --text file" -- "$ECR" embed --model "$T/m" --text "$T/nope.txt" --out "$T/x.npy"
has_fixed "$T/err" "$T/nope.txt: cannot open" "the missing file is named"
mkdir -p "$T/bert" "$T/gqa" "$T/notok"
printf '{"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1}\n' >"$T/bert/config.json"
cp "$T/m/model.safetensors" "$T/m/tokenizer.json" "$T/bert/"
expect 2 "a BERT folder" -- "$ECR" embed --model "$T/bert" --text "$T/t.txt" --out "$T/x.npy"
one_line "a BERT folder"; has_fixed "$T/err" "$T/bert/config.json: model_type must be \"llama\"" "not a Llama"
cp "$T/m"/* "$T/gqa/"
sed -E 's/("num_key_value_heads":[[:space:]]*)2/\11/' "$T/m/config.json" >"$T/gqa/config.json"
expect 2 "a grouped-query Llama" -- "$ECR" embed --model "$T/gqa" --text "$T/t.txt" --out "$T/x.npy"
has_fixed "$T/err" "$T/gqa/config.json: num_key_value_heads" "grouped-query attention is named"
cp "$T/m/config.json" "$T/m/model.safetensors" "$T/notok/"
expect 1 "a folder without tokenizer.json" -- "$ECR" embed --model "$T/notok" --text "$T/t.txt" --out "$T/x.npy"
has_fixed "$T/err" "$T/notok/tokenizer.json" "the missing tokenizer is named"
expect 1 "an unwritable --out" -- "$ECR" embed --model "$T/nothing-here" --text "$T/t.txt" --out "$T/no/such/x.npy"
one_line "an unwritable --out"; has_fixed "$T/err" "$T/no/such/x.npy: cannot write" "checked before the model loads"
expect 1 "an --out under a file" -- "$ECR" embed --model "$T/m" --text "$T/t.txt" --out "$T/t.txt/x.tsv" --format tsv
expect 2 "--data and --text" -- "$ECR" embed --model "$T/m" --data "$T/t.st" --text "$T/t.txt" --out "$T/x.npy"
expect 2 "neither --data nor --text" -- "$ECR" embed --model "$T/m" --out "$T/x.npy"
has_fixed "$T/err" "either --data or --text" "the choice is explained"
expect 2 "--format csv" -- "$ECR" embed --model "$T/m" --text "$T/t.txt" --out "$T/x.npy" --format csv
expect 2 "--out - with npy" -- "$ECR" embed --model "$T/m" --text "$T/t.txt" --out -
expect 2 "--text-format xml" -- "$ECR" embed --model "$T/m" --text "$T/t.txt" --out "$T/x.npy" --text-format xml
expect 2 "--text-format with --data" -- "$ECR" embed --model "$T/m" --data "$T/t.st" --out "$T/x.npy" --text-format lines
[ ! -e "$T/x.npy" ] && ok || bad "a failed embed left x.npy"
ls "$T" "$T/t.txt" 2>/dev/null | grep -q '\.tmp\.' && bad "temporary files left: $(ls "$T" | grep '\.tmp\.')" || ok

# ---- mpirun -------------------------------------------------------------------------------------
if "$ECR" --version 2>/dev/null | grep -q '^mpi: none' || ! command -v mpirun >/dev/null; then
    echo "cli_embed_text: SKIP mpirun: no MPI in this build or no mpirun"
else
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
        OMPI_MCA_btl_vader_single_copy_mechanism=none
    export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
    MPIRUN=(mpirun -np 2 --oversubscribe --bind-to none)
    expect 0 "--text under mpirun" -- "${MPIRUN[@]}" "$ECR" embed --model "$T/m" --text "$T/t.txt" --out "$T/mpi.npy" \
        --threads 1 --quiet --batch-tokens 512
    expect 0 "--text, one process" -- "$ECR" embed --model "$T/m" --text "$T/t.txt" --out "$T/one.npy" --threads 1 \
        --quiet --batch-tokens 512
    cmp -s "$T/mpi.npy" "$T/one.npy" && ok || bad "--text under mpirun differs from one process's"
    expect 2 "--text - under mpirun" -- "${MPIRUN[@]}" "$ECR" embed --model "$T/m" --text - --out "$T/x.npy" --quiet
    has_fixed "$T/err" "--text -: under mpirun" "stdin under mpirun is refused"
fi

cli_done
