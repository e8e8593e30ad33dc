#!/usr/bin/env bash
# cli_anchors.sh — `ecr anchors`: output tensors and metadata (through `ecr inspect`), the
# same bytes for the same seed and for 1 or 2 threads, exit 2 for a bad .npy, K > N and
# rows that do not match --data (naming the files and counts), --help. The .npy inputs are
# written byte by byte with printf (no Python needed).
set -u
. "$(dirname "$0")/cli_lib.sh"

# f32 VALUE: the 4 little-endian bytes of a few exact float32 values.
f32() {
    case $1 in
        0) printf '\x00\x00\x00\x00' ;;      1) printf '\x00\x00\x80\x3f' ;;
        -1) printf '\x00\x00\x80\xbf' ;;     2) printf '\x00\x00\x00\x40' ;;
        -2) printf '\x00\x00\x00\xc0' ;;     0.25) printf '\x00\x00\x80\x3e' ;;
        -0.25) printf '\x00\x00\x80\xbe' ;;  0.5) printf '\x00\x00\x00\x3f' ;;
        *) echo "f32: no bytes for $1" >&2; exit 1 ;;
    esac
}
# npy_header DESCR ROWS COLS: a version 1.0 header padded to 64 bytes, as NumPy writes it.
npy_header() {
    local dict="{'descr': '$1', 'fortran_order': False, 'shape': ($2, $3), }"
    local len=$(( (10 + ${#dict} + 1 + 63) / 64 * 64 - 10 ))
    printf '\x93NUMPY\x01\x00'
    printf "\\x$(printf %02x $((len & 255)))\\x$(printf %02x $((len >> 8)))"
    printf '%s' "$dict"
    printf '%*s\n' $((len - ${#dict} - 1)) ''
}
# emb.npy: 24 rows x 4 dims, four groups of 6 rows around +-2 e0 and +-2 e1.
make_emb() {
    local noise=(0 0.25 -0.25 0.5 0 -0.25)
    {
        npy_header '<f4' 24 4
        for g in 0 1 2 3; do
            for r in 0 1 2 3 4 5; do
                local v=(0 0 0 0)
                case $g in 0) v[0]=2 ;; 1) v[0]=-2 ;; 2) v[1]=2 ;; 3) v[1]=-2 ;; esac
                v[2]=${noise[$r]}; v[3]=${noise[$(((r + 2) % 6))]}
                for c in 0 1 2 3; do f32 "${v[$c]}"; done
            done
        done
    } >"$1"
}
make_emb "$T/emb.npy"

# --help
"$ECR_BIN" anchors --help >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 0 ] && ok || bad "--help: exit $rc"
grep -q '^usage: ecr anchors --emb EMB.npy' "$T/out" && ok || bad "--help: no usage on stdout"
"$ECR_BIN" --help | grep -q '^  anchors ' && ok || bad "ecr --help does not list anchors"

# A good run, with soft codes.
"$ECR_BIN" anchors --emb "$T/emb.npy" --k 4 --soft 2 --seed 3 --tau 0.07 --out "$T/a.st" \
    >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 0 ] && ok || bad "good run: exit $rc ($(cat "$T/err"))"
grep -q 'objective' "$T/err" && ok || bad "no progress (objective) on stderr without --quiet"
[ ! -s "$T/out" ] && ok || bad "good run printed on stdout: $(cat "$T/out")"
"$ECR_BIN" inspect "$T/a.st" >"$T/ins" 2>&1 || bad "inspect of anchors failed"
for want in 'anchors *F32 *\[4, 4\]' 'codes *U16 *\[24\]' 'mean *F32 *\[4\]' \
            'soft_idx *U16 *\[24, 2\]' 'soft_sim *F32 *\[24, 2\]' 'format *ecr-anchors-1' \
            'k *4$' 'dim *4$' 'rows *24$' 'tau *0.07$' 'seed *3$' 'iters *25$' 'restarts *3$' \
            'source *emb.npy$' 'source_hash *[0-9a-f]\{16\}$' 'objective *0\.[0-9]'; do
    grep -q "^  $want" "$T/ins" && ok || bad "inspect lacks '$want': $(cat "$T/ins")"
done

# Same seed, same bytes; 1 and 2 threads, same bytes; --quiet prints nothing.
"$ECR_BIN" anchors --emb "$T/emb.npy" --k 4 --soft 2 --seed 3 --tau 0.07 --threads 1 --quiet \
    --out "$T/b.st" 2>"$T/err" || bad "threads 1 run failed"
[ ! -s "$T/err" ] && ok || bad "--quiet printed: $(cat "$T/err")"
"$ECR_BIN" anchors --emb "$T/emb.npy" --k 4 --soft 2 --seed 3 --tau 0.07 --threads 2 --quiet \
    --out "$T/c.st" || bad "threads 2 run failed"
cmp -s "$T/a.st" "$T/b.st" && ok || bad "same seed gave different files"
cmp -s "$T/b.st" "$T/c.st" && ok || bad "1 and 2 threads gave different files"

# Hard codes only: no soft tensors.
"$ECR_BIN" anchors --emb "$T/emb.npy" --k 4 --quiet --out "$T/h.st" || bad "hard run failed"
"$ECR_BIN" inspect "$T/h.st" >"$T/ins" 2>&1
grep -q 'soft_' "$T/ins" && bad "soft tensors without --soft" || ok
grep -q '^  soft *0$' "$T/ins" && ok || bad "metadata soft is not 0"

# expect_fail RC WANT ARGS...: exit RC, one-line message containing WANT, no output left.
expect_fail() {
    local want_rc=$1 want=$2
    shift 2
    rm -f "$T"/o.st*
    "$ECR_BIN" anchors "$@" --out "$T/o.st" --quiet >"$T/out" 2>"$T/err"
    local rc=$?
    [ $rc -eq "$want_rc" ] && ok || bad "anchors $*: exit $rc, wanted $want_rc ($(cat "$T/err"))"
    grep -qF -- "$want" "$T/err" && ok || bad "anchors $*: message '$(cat "$T/err")' lacks '$want'"
    [ "$(wc -l <"$T/err")" -eq 1 ] && ok || bad "anchors $*: error is not one line: $(cat "$T/err")"
    ls "$T" | grep -q '^o\.st' && bad "anchors $*: output left behind" || ok
}

expect_fail 2 "emb.npy: k = 25 is more than the 24 rows" --emb "$T/emb.npy" --k 25
expect_fail 2 "emb.npy: k = 256 is more than the 24 rows" --emb "$T/emb.npy"
expect_fail 2 "--soft 5 is more than --k 4" --emb "$T/emb.npy" --k 4 --soft 5
expect_fail 2 "--k" --emb "$T/emb.npy" --k 0
expect_fail 2 "--emb is required" --k 4
expect_fail 2 "--bogus" --emb "$T/emb.npy" --k 4 --bogus 1

# Bad .npy files.
echo "not an array" >"$T/text.npy"
expect_fail 2 "text.npy: not a .npy file" --emb "$T/text.npy" --k 2
{ npy_header '<f8' 3 2; head -c 48 /dev/zero; } >"$T/f8.npy"
expect_fail 2 "f8.npy" --emb "$T/f8.npy" --k 2
{ npy_header '<f4' 24 4; head -c 40 /dev/zero; } >"$T/short.npy"
expect_fail 2 "short.npy" --emb "$T/short.npy" --k 2
expect_fail 1 "missing.npy" --emb "$T/missing.npy" --k 2

# --data: the rows must match the prepared file's texts.
for i in $(seq 1 23); do printf '{"text": "text number %d about %s"}\n' "$i" "$((i % 4))"; done >"$T/c23.jsonl"
{ cat "$T/c23.jsonl"; echo '{"text": "one more"}'; } >"$T/c24.jsonl"
"$ECR_BIN" tokenizer train --data "$T/c24.jsonl" --vocab-size 300 --out "$T/tok.json" --quiet \
    || bad "tokenizer train failed"
"$ECR_BIN" prepare --data "$T/c23.jsonl" --tokenizer "$T/tok.json" --out "$T/d23.st" --quiet \
    || bad "prepare 23 failed"
"$ECR_BIN" prepare --data "$T/c24.jsonl" --tokenizer "$T/tok.json" --out "$T/d24.st" --quiet \
    || bad "prepare 24 failed"
expect_fail 2 "emb.npy: 24 rows, but $T/d23.st holds 23 texts" --emb "$T/emb.npy" --k 4 --data "$T/d23.st"
expect_fail 1 "nodata.st" --emb "$T/emb.npy" --k 4 --data "$T/nodata.st"
"$ECR_BIN" anchors --emb "$T/emb.npy" --k 4 --data "$T/d24.st" --quiet --out "$T/d.st" 2>"$T/err"
rc=$?
[ $rc -eq 0 ] && ok || bad "matching --data: exit $rc ($(cat "$T/err"))"

# Ablation controls from a fitted file.
"$ECR_BIN" anchors --control shuffle-codes --from "$T/a.st" --seed 4 --out "$T/sh.st" 2>"$T/err" \
    && ok || bad "control shuffle-codes: $(cat "$T/err")"
grep -q "control shuffled-codes" "$T/err" && ok || bad "the control run does not say what it did"
"$ECR_BIN" inspect "$T/sh.st" >"$T/ins" 2>&1
grep -q '^  control *shuffled-codes$' "$T/ins" && ok || bad "no control metadata: $(cat "$T/ins")"
grep -q '^  soft_idx *U16 *\[24, 2\]' "$T/ins" && ok || bad "shuffled soft codes missing"
"$ECR_BIN" anchors --control random-anchors --from "$T/a.st" --quiet --out "$T/ra.st" && ok || bad "control random-anchors"
"$ECR_BIN" inspect "$T/ra.st" >"$T/ins" 2>&1
grep -q '^  control *random-anchors$' "$T/ins" && ok || bad "no random-anchors metadata"
grep -q 'soft_' "$T/ins" && bad "random anchors kept soft codes" || ok
expect_fail 2 "--control 'bogus': expected shuffle-codes or random-anchors" --control bogus --from "$T/a.st"
expect_fail 2 "already are a control (shuffled-codes)" --control random-anchors --from "$T/sh.st"
expect_fail 2 "--from" --control shuffle-codes
expect_fail 1 "missing.st" --control shuffle-codes --from "$T/missing.st"

cli_done
