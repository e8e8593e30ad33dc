#!/usr/bin/env bash
# cli_tokenizer.sh — `ecr tokenizer train|encode|decode`: help, exit codes and one-line
# messages, hand-computed ids on a toy corpus, invalid UTF-8 / bad ids / malformed JSONL,
# no file left behind on failure, exact round trip of all lo10 validation texts, and the
# interop check: Hugging Face's JavaScript tokenizer (@huggingface/tokenizers, installed
# with `npm ci --prefix tests/interop`) loading our tokenizer.json must produce the same
# ids as ecr on ALL 10,000 lo10 validation texts and on generated tricky lines.
# Interop is skipped (with a SKIP line, not a failure) when node or node_modules is missing.
# Run by make test-cli (any cwd works; ECR_BIN defaults to build/ecr); needs build/data/lo10 (make data).
set -u
. "$(dirname "$0")/cli_lib.sh"
DATA=$ROOT/build/data/lo10


# run WANT_RC ARGS... (stdin passed through): runs ecr tokenizer; stdout/stderr in $T/out, $T/err.
run() {
    local want=$1; shift
    "$ECR_BIN" tokenizer "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    if [ "$rc" -eq "$want" ]; then ok; else bad "tokenizer $* exited $rc, wanted $want; stderr: $(head -c 300 "$T/err")"; fi
    if [ "$want" -ne 0 ]; then   # failures: exactly one line on stderr, starting with "ecr"
        if [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q '^ecr' "$T/err"; then ok; else bad "tokenizer $*: stderr not one 'ecr' line: $(cat "$T/err")"; fi
    fi
}
out_is()  { if [ "$(cat "$T/out")" = "$1" ]; then ok; else bad "stdout is '$(head -c 200 "$T/out")', wanted '$1'"; fi; }
out_has() { if grep -qF -- "$1" "$T/out"; then ok; else bad "stdout lacks '$1'"; fi; }
err_has() { if grep -qF -- "$1" "$T/err"; then ok; else bad "stderr lacks '$1': $(cat "$T/err")"; fi; }

PY=""
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1; then PY=$p; break; fi
done
if [ -z "$PY" ]; then echo "cli_tokenizer: python3 not found" >&2; exit 1; fi
if [ ! -f "$DATA/valid.jsonl" ] || [ ! -f "$DATA/train.jsonl" ]; then
    echo "cli_tokenizer: $DATA/{train,valid}.jsonl missing (make data)" >&2; exit 1
fi

# ---- help and usage --------------------------------------------------------------------
run 0 --help;            out_has "train"; out_has "encode"; out_has "decode"
run 0 train --help;      out_has "--vocab-size"; out_has "--data"
run 0 encode --help;     out_has "--tokenizer"
run 0 decode --help;     out_has "--tokenizer"
"$ECR_BIN" tokenizer >/dev/null 2>&1;       [ $? -eq 2 ] && ok || bad "no subcommand should exit 2"
"$ECR_BIN" tokenizer frobnicate >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "unknown subcommand should exit 2"
"$ECR_BIN" tokenizer train --out "$T/x.json" >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "train without --data should exit 2"
"$ECR_BIN" tokenizer train --data a --out b --vocab-size 100 >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "--vocab-size 100 should exit 2"
"$ECR_BIN" tokenizer encode --tokenizer t --bogus >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "unknown flag should exit 2"

# ---- toy corpus: hand-computed merges ---------------------------------------------------
# words: "ab" x1, " ab" x2, "abc" x1 -> merges a+b (id 258), then Ġ+ab (259); (ab,c) is seen once.
printf '{"text": "ab ab ab"}\n{"id": "x", "text": "abc"}\n' >"$T/toy.jsonl"
run 0 train --data "$T/toy.jsonl" --out "$T/toy.json" --vocab-size 1000 --quiet
[ -s "$T/toy.json" ] && ok || bad "toy.json not written"
[ -s "$T/err" ] && bad "--quiet train printed: $(cat "$T/err")" || ok
printf 'ab abc\n\nc' | run 0 encode --tokenizer "$T/toy.json"
out_is $'258 259 101\n\n101'
printf '258 259 101\n\n0 101 1\n' | run 0 decode --tokenizer "$T/toy.json"
out_is $'ab abc\n\nc'
run 0 train --data "$T/toy.jsonl" --out "$T/toy2.json" --vocab-size 1000
err_has "tokenizer:"   # progress on stderr without --quiet
cmp -s "$T/toy.json" "$T/toy2.json" && ok || bad "same corpus gave different tokenizer.json"

# ---- bad input ----------------------------------------------------------------------------
printf 'fine\nalso fine\nab\x80cd\nnot reached\n' | run 2 encode --tokenizer "$T/toy.json"
err_has "stdin:3: invalid UTF-8 at byte 2"
printf 'caf\xc3\n' | run 2 encode --tokenizer "$T/toy.json"
err_has "stdin:1: invalid UTF-8 at byte 3"
printf '\xed\xa0\x80\n' | run 2 encode --tokenizer "$T/toy.json"   # surrogate
err_has "stdin:1: invalid UTF-8 at byte 0"
printf '258\n5 99999\n' | run 2 decode --tokenizer "$T/toy.json"
err_has "stdin:2: token id 99999 is out of range [0, 260)"
printf '258 x7\n' | run 2 decode --tokenizer "$T/toy.json"
err_has "stdin:1: 'x7' is not a token id"
printf '{"text": "ok"}\n{"text": 5}\n' >"$T/badtype.jsonl"
run 2 train --data "$T/badtype.jsonl" --out "$T/bad.json" --quiet
err_has "badtype.jsonl:2"
printf '{"text": "ok"}\n{"text": "unterminated\n' >"$T/badjson.jsonl"
run 2 train --data "$T/badjson.jsonl" --out "$T/bad.json" --quiet
err_has "badjson.jsonl:2"
[ -e "$T/bad.json" ] && bad "failed train left $T/bad.json" || ok
run 1 train --data "$T/missing.jsonl" --out "$T/bad.json" --quiet
err_has "missing.jsonl"
run 1 train --data "$T/toy.jsonl" --out "$T/no/such/dir/t.json" --quiet
err_has "no/such/dir/t.json"
echo '{"version": "1.0", "model": {"type": "Unigram"}}' >"$T/notbpe.json"
echo hi | run 2 encode --tokenizer "$T/notbpe.json"
err_has "notbpe.json"
echo hi | run 1 encode --tokenizer "$T/missing.json"
err_has "missing.json"
ls "$T" | grep -q '\.tmp\.' && bad "temporary files left: $(ls "$T")" || ok

# ---- lo10: train, exact round trip of every validation text -------------------------------
"$PY" - "$DATA/valid.jsonl" "$T/valid.txt" <<'EOF'
import json, sys
with open(sys.argv[1], encoding="utf-8") as f, open(sys.argv[2], "w", encoding="utf-8", newline="\n") as o:
    for line in f:
        t = json.loads(line)["text"]
        assert "\n" not in t
        o.write(t + "\n")
EOF
run 0 train --data "$DATA/train.jsonl" --out "$T/tok.json" --vocab-size 8192 --quiet
run 0 encode --tokenizer "$T/tok.json" <"$T/valid.txt"
cp "$T/out" "$T/ids_ecr.txt"
[ "$(wc -l <"$T/ids_ecr.txt")" -eq 10000 ] && ok || bad "encode gave $(wc -l <"$T/ids_ecr.txt") lines for 10000 texts"
run 0 decode --tokenizer "$T/tok.json" <"$T/ids_ecr.txt"
cmp -s "$T/out" "$T/valid.txt" && ok || bad "decode(encode(valid)) differs from the validation texts"
[ "$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["model"]["vocab"]))' "$T/tok.json")" = 8192 ] \
    && ok || bad "tokenizer.json vocab is not 8192 entries"

# ---- interop with Hugging Face's JavaScript tokenizer -------------------------------------
INTEROP=$ROOT/tests/interop
if ! command -v node >/dev/null 2>&1; then
    echo "cli_tokenizer: SKIP interop: node not found"
elif [ ! -d "$INTEROP/node_modules/@huggingface/tokenizers" ]; then
    echo "cli_tokenizer: SKIP interop: tests/interop/node_modules missing (npm ci --prefix tests/interop)"
else
    if node "$INTEROP/encode.mjs" "$T/tok.json" <"$T/valid.txt" >"$T/ids_js.txt" 2>"$T/err"; then ok; else bad "encode.mjs failed: $(head -c 300 "$T/err")"; fi
    if cmp -s "$T/ids_ecr.txt" "$T/ids_js.txt"; then ok
    else
        n=$(diff "$T/ids_ecr.txt" "$T/ids_js.txt" | grep -c '^<')
        first=$(diff "$T/ids_ecr.txt" "$T/ids_js.txt" | head -1)
        bad "interop: $n of 10000 validation texts encode differently in ecr and @huggingface/tokenizers (first: $first)"
    fi
    # Tricky lines: every whitespace kind, marks, digits of other scripts, emoji, controls, long runs,
    # and random mixtures over blocks assigned since Unicode 6 (both sides agree on those).
    node - "$T/tricky.txt" <<'EOF'
const fs = require("fs");
const fixed = ["", " ", "  ", "   x", "x   ", "\t\tx", "a\rb", "a\r", " \u00a0 a", "a\u0085b", "\u2028x\u2029",
  "\u3000\u3000日本", "e\u0301\u0302 \u0301x", "1,234.56 ٣٤٥ １２３", "😀👍🏽 ok 😀", "x\u200by\ufeffz",
  "Привет, мир!", "東京タワー2024年", "<|endoftext| >", "don't stop", "a".repeat(5000), " ".repeat(3000) + "b",
  "日本語".repeat(800), "\u0001\u001f\u007f\u0080\u009f", "\\\"quoted\\\""];
const ranges = [[0x20, 0x7e, 30], [0xa0, 0xff, 4], [0x100, 0x17f, 4], [0x300, 0x36f, 4], [0x391, 0x3a9, 2],
  [0x3b1, 0x3c9, 2], [0x400, 0x4ff, 8], [0x660, 0x669, 1], [0x3041, 0x3096, 5], [0x30a1, 0x30fa, 5],
  [0x4e00, 0x9fa5, 10], [0xff01, 0xff5e, 2], [0xff10, 0xff19, 1], [0x2010, 0x2027, 2], [0x2030, 0x205e, 2],
  [0x20a0, 0x20b5, 1], [0x1f600, 0x1f64f, 3], [0x1, 0x8, 1], [0xe, 0x1f, 1], [0x7f, 0x9f, 1]];
const ws = [0x9, 0xb, 0xc, 0xd, 0x20, 0x20, 0x20, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2005, 0x200a, 0x2028,
  0x2029, 0x202f, 0x205f, 0x3000];
let total = 0; for (const r of ranges) total += r[2];
let s = 20240607;
const rnd = (n) => { s = (Math.imul(s, 1103515245) + 12345) >>> 0; return (s >>> 8) % n; };
const pick = () => {
  if (rnd(100) < 20) return ws[rnd(ws.length)];
  let k = rnd(total);
  for (const [lo, hi, w] of ranges) { if (k < w) return lo + rnd(hi - lo + 1); k -= w; }
};
const lines = fixed.slice();
for (let i = 0; i < 5000; i++) {
  let t = ""; const n = rnd(60);
  for (let j = 0; j < n; j++) t += String.fromCodePoint(pick());
  lines.push(t);
}
fs.writeFileSync(process.argv[2], lines.join("\n") + "\n");
EOF
    run 0 encode --tokenizer "$T/tok.json" <"$T/tricky.txt"
    cp "$T/out" "$T/tricky_ecr.txt"
    node "$INTEROP/encode.mjs" "$T/tok.json" <"$T/tricky.txt" >"$T/tricky_js.txt" 2>"$T/err" || bad "encode.mjs failed on tricky lines"
    if cmp -s "$T/tricky_ecr.txt" "$T/tricky_js.txt"; then ok
    else bad "interop: tricky lines encode differently: $(diff "$T/tricky_ecr.txt" "$T/tricky_js.txt" | head -3 | cut -c1-200)"; fi
    run 0 decode --tokenizer "$T/tok.json" <"$T/tricky_ecr.txt"
    cmp -s "$T/out" "$T/tricky.txt" && ok || bad "decode(encode(tricky)) differs"
    # Known, documented difference: Hugging Face matches added tokens in the input text first, so
    # the literal text "<|endoftext|>" becomes id 0 there; ecr encodes it as ordinary text so
    # that decode(encode(s)) == s holds for every string.
    printf 'a<|endoftext|>\n' >"$T/special.txt"
    node "$INTEROP/encode.mjs" "$T/tok.json" <"$T/special.txt" >"$T/special_js.txt" 2>/dev/null
    printf 'a<|endoftext|>\n' | run 0 encode --tokenizer "$T/tok.json"
    if grep -qw 0 "$T/special_js.txt" && ! grep -qw 0 "$T/out"; then ok
    else bad "special-token text: js '$(cat "$T/special_js.txt")' ecr '$(cat "$T/out")'"; fi
    echo "cli_tokenizer: interop: ecr and @huggingface/tokenizers agree on 10000 lo10 validation texts and $(wc -l <"$T/tricky.txt") tricky lines"
fi

cli_done
