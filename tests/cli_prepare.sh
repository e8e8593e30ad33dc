#!/usr/bin/env bash
# cli_prepare.sh — `ecr prepare`: a good corpus round-trips through the prepared file;
# every kind of bad line is exit 2 with "file:line: reason" and leaves no output behind.
set -u
. "$(dirname "$0")/cli_lib.sh"

# A small corpus in three scripts, and a tokenizer trained on it.
cat >"$T/c.jsonl" <<'J'
{"id": "g1-en", "group": "g1", "lang": "en", "label": "calc", "text": "Select the cell range."}
{"id": "g1-ru", "group": "g1", "lang": "ru", "label": "calc", "text": "Выделите диапазон ячеек."}
{"id": "g1-ja", "group": "g1", "lang": "ja", "label": "calc", "text": "セル範囲を選択します。"}

{"id": "g2-en", "group": "g2", "lang": "en", "text": "Click \"OK\" to close the dialog."}
{"text": "no optional fields at all"}
J
"$ECR_BIN" tokenizer train --data "$T/c.jsonl" --vocab-size 300 --out "$T/tok.json" --quiet \
    || bad "tokenizer train failed"

"$ECR_BIN" prepare --data "$T/c.jsonl" --tokenizer "$T/tok.json" --out "$T/d.st" --quiet 2>"$T/err"
[ $? -eq 0 ] && ok || bad "prepare of a good corpus failed: $(cat "$T/err")"
"$ECR_BIN" inspect "$T/d.st" >"$T/out" 2>&1 || bad "inspect of prepared data failed"
grep -q 'n_texts *5' "$T/out" && ok || bad "n_texts is not 5: $(cat "$T/out")"
grep -q '\["en","ru","ja"\]' "$T/out" && ok || bad "langs table wrong: $(cat "$T/out")"
grep -q 'groups_count *2' "$T/out" && ok || bad "groups_count is not 2"

# bad_case NAME LINE_CONTENT EXPECTED_SUBSTRING: line 2 of the corpus is bad.
bad_case() {
    local name=$1 content=$2 want=$3
    { printf '%s\n' '{"text": "fine"}'; printf '%s\n' "$content"; printf '%s\n' '{"text": "also fine"}'; } >"$T/$name.jsonl"
    "$ECR_BIN" prepare --data "$T/$name.jsonl" --tokenizer "$T/tok.json" --out "$T/$name.st" --quiet \
        >"$T/out" 2>"$T/err"
    local rc=$?
    [ $rc -eq 2 ] && ok || bad "$name: exit $rc, wanted 2 ($(cat "$T/err"))"
    grep -qF "$name.jsonl:2: $want" "$T/err" && ok || bad "$name: message '$(cat "$T/err")' lacks '$name.jsonl:2: $want'"
    [ "$(wc -l <"$T/err")" -eq 1 ] && ok || bad "$name: error is not one line"
    ls "$T" | grep -q "^$name.st" && bad "$name: output file left behind" || ok
}
bad_case malformed '{"text": "unterminated' 'malformed JSON'
bad_case notobject '["text"]' 'not a JSON object'
bad_case missing '{"lang": "en"}' 'missing "text"'
bad_case empty '{"text": ""}' '"text" is empty'
bad_case nonstring '{"text": 42}' '"text" is not a string'
bad_case badlang '{"text": "x", "lang": 7}' '"lang" is not a string'
bad_case trailing '{"text": "x"} junk' 'trailing characters'
bad_case surrogate '{"text": "\ud800"}' 'malformed JSON'
printf '{"text": "ok"}\n{"text": "caf\xe9"}\n' >"$T/badutf8.jsonl"
"$ECR_BIN" prepare --data "$T/badutf8.jsonl" --tokenizer "$T/tok.json" --out "$T/u.st" --quiet 2>"$T/err"
rc=$?
[ $rc -eq 2 ] && ok || bad "invalid UTF-8: exit $rc"
grep -qF 'badutf8.jsonl:2: invalid UTF-8 at byte 14' "$T/err" && ok || bad "invalid UTF-8 message: $(cat "$T/err")"
[ -e "$T/u.st" ] && bad "invalid UTF-8: output left behind" || ok

# Usage errors and missing files.
"$ECR_BIN" prepare --data "$T/c.jsonl" --out "$T/x.st" 2>"$T/err"; rc=$?
[ $rc -eq 2 ] && grep -q -- '--tokenizer is required' "$T/err" && ok || bad "missing --tokenizer: exit $rc $(cat "$T/err")"
"$ECR_BIN" prepare --data "$T/nope.jsonl" --tokenizer "$T/tok.json" --out "$T/x.st" 2>"$T/err"; rc=$?
[ $rc -ne 0 ] && grep -qF 'nope.jsonl' "$T/err" && ok || bad "missing corpus: exit $rc $(cat "$T/err")"
"$ECR_BIN" prepare --help >"$T/out"; rc=$?
[ $rc -eq 0 ] && grep -q 'usage: ecr prepare' "$T/out" && ok || bad "--help"
"$ECR_BIN" prepare --data a --tokenizer b --out c --bogus 2>"$T/err"; rc=$?
[ $rc -eq 2 ] && grep -q "unknown flag '--bogus'" "$T/err" && ok || bad "unknown flag: exit $rc"

cli_done
