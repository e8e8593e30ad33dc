#!/usr/bin/env bash
# cli_report.sh — `ecr report` on synthetic run folders written here with known numbers:
# mean ± sample std per group in report.md (e.g. P@1 0.5 and 0.7 -> "0.600 ± 0.141"), group
# order, the geometry space, stability computed from log.jsonl, warnings for missing pieces,
# well-formed SVGs that name the groups and axes, byte-identical output on a second run,
# and the refusals (exit 2, one line naming the file; nothing written).
set -u
ECR=${ECR_BIN:-build/ecr}
T=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "cli_report: FAIL: $*" >&2; }

# expect CODE DESCRIPTION -- command...   (stdout/stderr kept in $T/out, $T/err)
expect() {
    local want=$1 what=$2
    shift 3
    "$@" >"$T/out" 2>"$T/err"
    local got=$?
    if [ "$got" = "$want" ]; then ok; else bad "$what: exit $got, wanted $want: $(head -c 400 "$T/err")"; fi
}
has() { # has FILE FIXED-STRING DESCRIPTION
    if grep -qF -- "$2" "$1"; then ok; else bad "$3: '$2' not in $1: $(head -c 300 "$1")"; fi
}
hasnt() {
    if grep -qF -- "$2" "$1"; then bad "$3: '$2' found in $1"; else ok; fi
}
one_line_err() { # the failure message: exactly one line, "ecr: ..." naming $1
    if [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "^ecr: .*$1" "$T/err"; then ok
    else bad "stderr is not one 'ecr: ...$1...' line: $(cat "$T/err")"; fi
}
well_formed() { # well_formed FILE.svg
    if command -v xmllint >/dev/null; then
        if xmllint --noout "$1" 2>"$T/xmlerr"; then ok; else bad "$1 is not well-formed: $(head -c 300 "$T/xmlerr")"; fi
    elif python3 -c 'import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])' "$1" 2>"$T/xmlerr"; then ok
    else bad "$1 is not well-formed: $(tail -n 1 "$T/xmlerr")"; fi
}

# ---- synthetic runs --------------------------------------------------------------------------
# tiny/none  seeds 1, 2: bpb 1.50/1.52, P@1 0.5/0.7 (de 0.4/0.6, zh_CN null), eff. rank h
#            70/74, space h;
#            seed 1 has a loss spike at step 120 (spikes/1k 5 vs 0), grad_norm 1/3 (CV 0.5);
#            seed 2's log ends in a truncated line.
# tiny/ecr   seed 3: one seed, space u, P@1 0.80, agreement 0.45.
# tiny, tag "ecr <K=64> & λ=0.05"  seeds 1, 2: P@1 0.8/0.9 on u, anchor agreement 0.4/0.6.
# small/kd   seed 1: eval.json with "stability" (1.5 spikes/1k, CV 0.25), no log.jsonl.
# 2x128/?    no run.json (config.json + eval.json only).
python3 - "$T" <<'EOF' || bad "could not write the synthetic runs"
import json, math, os, sys
T = sys.argv[1]

def write(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)

def log(path, seed, spike_at=None, truncated=False, eff_u=False):
    with open(path, "w") as f:
        for s in range(1, 201):
            loss = 4 + 5 * math.exp(-s / 40) + (0.01 if s % 2 else -0.01) + 0.002 * seed
            if s == spike_at:
                loss += 2
            rec = {"step": s, "loss": round(loss, 6), "lr": 0.001, "grad_norm": 1 if s % 2 else 3,
                   "clipped": s % 10 == 0, "tokens": 4096 * s, "elapsed_s": 0.1 * s, "new_field": [1]}
            f.write(json.dumps(rec) + "\n")
            if s % 50 == 0:
                v = {"step": s, "val_loss": round(4.5 + 3 * math.exp(-s / 50) + 0.01 * seed, 6),
                     "val_bpb": 1.7, "val_tokens": 1000, "val_eff_rank": 20 + s / 10 + seed}
                if eff_u:
                    v["val_eff_rank_u"] = 30 + s / 8 + seed
                f.write(json.dumps(v) + "\n")
        if truncated:
            f.write('{"step": 201, "loss": 4.0')

LANGS = ["en", "de", "ja", "zh_CN"]
LABELS = ["calc", "writer", "impress"]

def pca(shift):
    n = 40
    return {"space": "u", "texts": n, "explained": [0.2345, 0.101],
            "x": [math.cos(i) * (1 + i % 4) + shift for i in range(n)],
            "y": [math.sin(i) * (1 + i % 3) for i in range(n)],
            "lang": [i % 4 for i in range(n)], "label": [i % 3 for i in range(n)],
            "langs": LANGS, "labels": LABELS}

def geom(p1, de, er, agree=None, space="h"):
    g = {"dim": 64, "effective_rank": er, "anisotropy": 0.3, "silhouette": -0.05,
         "p1": {"mean": p1, "per_lang": {"de": de, "ja": p1, "zh_CN": None if agree is None else p1}},
         "label_transfer": {"mean": 0.5, "per_lang": {"de": 0.5}},
         "cka": 0.7, "knn_overlap10": 0.2, "anchor_agreement": agree, "seconds": 0.1}
    return g

def evaljson(bpb, p1, de, er, agree=None, u=False, pca_shift=None, stability=None):
    g = geom(p1, de, er, agree)
    e = {"model": "m", "data": "d", "texts": 40,
         "lm": {"overall": {"loss": 4.0, "ppl": 54.6, "bpb": bpb, "tokens": 1, "bytes": 1, "texts": 40},
                "per_lang": {}},
         "geometry": {"texts": 40, "english": "en", "teacher": None, "anchors": None, "notes": [],
                      "h": geom(0.01, 0.01, 5.0), "u": g if u else None}}
    if not u:
        e["geometry"]["h"] = g
    if pca_shift is not None:
        e["pca"] = pca(pca_shift)
    if stability:
        e["stability"] = stability
    return e

def run(name, preset, method, tag, seed, ev=None, spike_at=None, truncated=False, eff_u=False, logs=True):
    d = os.path.join(T, "runs", name)
    os.makedirs(d)
    write(os.path.join(d, "run.json"), {"preset": preset, "tag": tag, "method": method, "seed": seed,
                                         "steps": 200, "tokens_per_step": 4096, "objective": "lm"})
    if logs:
        log(os.path.join(d, "log.jsonl"), seed, spike_at, truncated, eff_u)
    if ev:
        write(os.path.join(d, "eval.json"), ev)

TAG = "ecr <K=64> & \u03bb=0.05"
run("none1", "tiny", "none", None, 1, evaljson(1.50, 0.5, 0.4, 70.0, pca_shift=0), spike_at=120)
run("none2", "tiny", "none", None, 2, evaljson(1.52, 0.7, 0.6, 74.0, pca_shift=1), truncated=True)
run("tag1", "tiny", "ecr", TAG, 1, evaljson(1.60, 0.8, 0.7, 80.0, 0.4, u=True, pca_shift=3), eff_u=True)
run("tag2", "tiny", "ecr", TAG, 2, evaljson(1.62, 0.9, 0.8, 82.0, 0.6, u=True), eff_u=True)
run("ecr3", "tiny", "ecr", None, 3, evaljson(1.55, 0.8, 0.7, 78.0, 0.45, u=True, pca_shift=2), eff_u=True)
run("kd1", "small", "kd", None, 1,
    evaljson(1.40, 0.3, 0.2, 90.0, stability={"spikes_per_1k_steps": 1.5, "grad_norm_cv": 0.25}),
    logs=False)
d = os.path.join(T, "runs", "norunjson")
os.makedirs(d)
write(os.path.join(d, "config.json"), {"hidden_size": 128, "num_hidden_layers": 2})
write(os.path.join(d, "eval.json"), evaljson(1.9, 0.1, 0.1, 10.0))
EOF
R="$T/runs"
RUNS=("$R/none1" "$R/tag2" "$R/kd1" "$R/norunjson" "$R/ecr3" "$R/tag1" "$R/none2")

# ---- usage -------------------------------------------------------------------------------------
expect 0 "report --help" -- "$ECR" report --help
has "$T/out" "usage: ecr report RUN_DIR... --out REPORT_DIR" "--help prints usage on stdout"
for w in --title --quiet run.json log.jsonl eval.json tradeoff.svg pca_label.svg "exit status"; do
    has "$T/out" "$w" "--help documents $w"
done
expect 0 "ecr --help" -- "$ECR" --help
has "$T/out" "report" "ecr --help lists report"
expect 2 "report without RUN_DIR" -- "$ECR" report --out "$T/none"
has "$T/err" "no RUN_DIR" "no runs is refused"
expect 2 "report without --out" -- "$ECR" report "$R/none1"
expect 2 "report with an unknown flag" -- "$ECR" report "$R/none1" --out "$T/x" --bogus
if [ -e "$T/none" ] || [ -e "$T/x" ]; then bad "a refused report created its folder"; else ok; fi

# ---- the report ----------------------------------------------------------------------------------
O="$T/rep"
expect 0 "report on 7 runs" -- "$ECR" report "${RUNS[@]}" --out "$O/sub" --title "Synthetic | test"
cp "$T/err" "$T/err_main"
for f in report.md loss_train.svg loss_valid.svg eff_rank.svg pca_lang.svg pca_label.svg \
         p1_bars.svg tradeoff.svg; do
    if [ -s "$O/sub/$f" ]; then ok; else bad "$f not written"; fi
    has "$T/out" "$O/sub/$f" "stdout names $f"
done
if [ "$(wc -l <"$T/out")" -eq 8 ]; then ok; else bad "stdout should list 8 files: $(cat "$T/out")"; fi
if ls "$O/sub" | grep -q tmp; then bad "temporary files left: $(ls "$O/sub")"; else ok; fi
has "$T/err_main" "7 runs in 5 groups" "progress names runs and groups"
has "$T/err_main" "kd1: no log.jsonl" "a run without a log is reported"
has "$T/err_main" "left out of loss_train" "the plots it misses are named"
has "$T/err_main" "none2/log.jsonl:205: truncated last line skipped" "a truncated last log line is skipped"
has "$T/err_main" "norunjson: no log.jsonl" "the run without run.json is reported"

M="$O/sub/report.md"
has "$M" "# Synthetic \| test" "title (escaped for Markdown)"
has "$M" "7 runs in 5 groups" "run count"
# tiny/none: bpb 1.50, 1.52; P@1 0.5, 0.7; eff. rank 70, 74; spikes 5, 0; grad-norm CV 0.5
has "$M" "| tiny | none | 2 | h | 1.510 ± 0.014 | 72.0 ± 2.8 | 0.300 ± 0.000 | 0.600 ± 0.141 |" "tiny/none row"
has "$M" "| 2.50 ± 3.54 | 0.500 ± 0.000 |" "stability from log.jsonl (spike planted in one seed)"
has "$M" "| tiny | ecr | 1 | u | 1.550 | 78.0 |" "one seed: the mean alone"
has "$M" "| tiny | ecr \<K=64\> & λ=0.05 | 2 | u | 1.610 ± 0.014 | 81.0 ± 1.4 |" "tag row (escaped)"
has "$M" "| 0.850 ± 0.071 |" "tag P@1 0.8, 0.9"
has "$M" "| 0.500 ± 0.141 | 0.00 ± 0.00 | 0.500 ± 0.000 |" "tag row: anchor agreement 0.4, 0.6; no spikes"
has "$M" "| small | kd | 1 | h | 1.400 | 90.0 |" "small/kd row"
has "$M" "| 1.50 | 0.250 |" "stability from eval.json"
has "$M" "| 2x128 | ? | 1 | h | 1.900 |" "run without run.json: LxD from config.json, method ?"
has "$M" "| – | – |" "missing values are dashes"
# order: tiny none, tiny ecr, tiny <tag>, small kd, 2x128 ?
order=$(grep -n -E '^\| (tiny|small|2x128) \| [^|]+ \| [0-9]+ \| [uh] \|' "$M" | cut -d'|' -f2-3 | tr -d ' ' | tr '\n' ';')
if [ "$order" = "tiny|none;tiny|ecr;tiny|ecr\<K=64\>&λ=0.05;small|kd;2x128|?;" ]; then ok
else bad "group order: $order"; fi
has "$M" "| de | ja | zh_CN | mean |" "P@1 per language header"
has "$M" "| tiny | none | 2 | 0.500 ± 0.141 | 0.600 ± 0.141 | – | 0.600 ± 0.141 |" "P@1 per language row"
has "$M" "| tiny | ecr | 1 | 0.700 | 0.800 | 0.800 | 0.800 |" "P@1 per language, one seed"
has "$M" "Stability computed from log.jsonl: " "the stability source is stated"
has "$M" "**u** (the ECR projection" "the geometry space is explained"
for f in loss_train loss_valid eff_rank p1_bars tradeoff pca_lang pca_label; do
    has "$M" "]($f.svg)" "report.md links $f.svg"
done
has "$M" '`'"$R/none2"'`' "runs are listed"

# ---- SVGs ----------------------------------------------------------------------------------------
TAGX='ecr &lt;K=64&gt; &amp; λ=0.05'
for f in "$O"/sub/*.svg; do
    well_formed "$f"
    has "$f" 'viewBox="0 0 ' "$(basename "$f") has a viewBox"
    has "$f" '<title>' "$(basename "$f") has a title"
    if grep -qE 'font-size="([0-9]|1[01])"' "$f"; then bad "$(basename "$f"): a font under 12 px"; else ok; fi
    if grep -qiE 'nan|inf"' "$f"; then bad "$(basename "$f") holds a NaN/inf"; else ok; fi
done
S="$O/sub"
has "$S/loss_train.svg" ">step</text>" "loss_train x axis title"
has "$S/loss_train.svg" ">training loss (nats/token)</text>" "loss_train y axis title"
has "$S/loss_train.svg" ">none</text>" "loss_train legend: none"
has "$S/loss_train.svg" ">$TAGX</text>" "loss_train legend: the tag, XML-escaped"
has "$S/loss_train.svg" ">tiny</text>" "loss_train panel title"
hasnt "$S/loss_train.svg" ">kd</text>" "kd has no log: not in loss_train"
hasnt "$S/loss_train.svg" ">small</text>" "no panel for a size without logs"
has "$S/loss_valid.svg" ">validation loss (nats/token)</text>" "loss_valid y axis title"
has "$S/eff_rank.svg" ">effective rank (u; h without ECR)</text>" "eff_rank names the spaces"
has "$S/p1_bars.svg" ">P@1</text>" "p1_bars y axis"
has "$S/p1_bars.svg" ">zh_CN</text>" "p1_bars language tick"
has "$S/p1_bars.svg" ">mean</text>" "p1_bars mean cluster"
has "$S/p1_bars.svg" ">kd</text>" "p1_bars legend has kd"
has "$S/p1_bars.svg" ">small</text>" "p1_bars small panel"
has "$S/tradeoff.svg" ">validation bits/byte (lower is better)</text>" "tradeoff x axis"
has "$S/tradeoff.svg" ">P@1 mean (higher is better)</text>" "tradeoff y axis"
has "$S/tradeoff.svg" ">$TAGX</text>" "tradeoff point label"
has "$S/pca_lang.svg" ">PC1 (23.4% var)</text>" "pca x axis: explained variance"
has "$S/pca_lang.svg" ">PC2 (10.1% var)</text>" "pca y axis"
has "$S/pca_lang.svg" ">zh_CN</text>" "pca_lang legend"
has "$S/pca_label.svg" ">impress</text>" "pca_label legend"
has "$S/pca_lang.svg" "tiny · none (u, seed 1)" "pca panel: first seed of the group"
hasnt "$S/pca_lang.svg" "seed 2)" "only the first seed with a PCA is drawn"
n_circles=$(grep -c '^<circle' "$S/pca_lang.svg")
if [ "$n_circles" -ge 40 ]; then ok; else bad "pca_lang: $n_circles circles"; fi

# Deterministic: the same inputs give byte-identical files (another folder, --quiet).
expect 0 "report again, --quiet" -- "$ECR" report "${RUNS[@]}" --out "$T/rep2" --title "Synthetic | test" --quiet
hasnt "$T/err" "runs in" "--quiet hides progress"
for f in "$S"/*; do
    if cmp -s "$f" "$T/rep2/$(basename "$f")"; then ok; else bad "$(basename "$f") differs between two runs"; fi
done

# ---- plots without data ----------------------------------------------------------------------------
expect 0 "report on one run without log or pca" -- "$ECR" report "$R/kd1" --out "$T/rep3"
has "$T/err" "loss_train.svg not written" "skipped plots are stated"
has "$T/err" "pca_lang.svg not written" "skipped pca is stated"
if [ -e "$T/rep3/loss_train.svg" ] || [ -e "$T/rep3/pca_lang.svg" ]; then bad "an empty plot was written"; else ok; fi
has "$T/rep3/report.md" "Not drawn:" "report.md lists the plots not drawn"
has "$T/rep3/report.md" "](p1_bars.svg)" "report.md links the plots drawn"

# ---- bad input: exit 2, one line naming the file, nothing written -------------------------------------
mkdir -p "$T/bad/ev" "$T/bad/log" "$T/bad/type" "$T/bad/empty" "$T/bad/pca"
cp "$R/none1/run.json" "$T/bad/ev/"
printf '{"lm": {"overall": {"bpb": 1.5,}}}\n' >"$T/bad/ev/eval.json"
expect 2 "malformed eval.json" -- "$ECR" report "$R/none1" "$T/bad/ev" --out "$T/bad/out1"
one_line_err "bad/ev/eval.json:1:"
if [ -e "$T/bad/out1/report.md" ] || [ -e "$T/bad/out1" ]; then bad "malformed input wrote the report"; else ok; fi
cp "$R/none1/run.json" "$T/bad/log/"
{ head -n 3 "$R/none1/log.jsonl"; echo '{"step": 4, "loss": '; head -n 8 "$R/none1/log.jsonl" | tail -n 4; } >"$T/bad/log/log.jsonl"
expect 2 "malformed middle line of log.jsonl" -- "$ECR" report "$T/bad/log" --out "$T/bad/out2"
one_line_err "bad/log/log.jsonl:4: not a JSON object"
cp "$R/tag1/run.json" "$T/bad/type/"
python3 - "$R/tag1/eval.json" "$T/bad/type/eval.json" <<'EOF'
import json, sys
e = json.load(open(sys.argv[1])); e["geometry"]["u"]["p1"]["mean"] = "high"
json.dump(e, open(sys.argv[2], "w"))
EOF
expect 2 "eval.json field of the wrong type" -- "$ECR" report "$T/bad/type" --out "$T/bad/out3"
one_line_err "type/eval.json: field 'geometry.u.p1.mean': expected a number"
cp "$R/tag1/run.json" "$T/bad/pca/"
python3 - "$R/tag1/eval.json" "$T/bad/pca/eval.json" <<'EOF'
import json, sys
e = json.load(open(sys.argv[1])); e["pca"]["lang"][5] = 9
json.dump(e, open(sys.argv[2], "w"))
EOF
expect 2 "pca index out of range" -- "$ECR" report "$T/bad/pca" --out "$T/bad/out4"
one_line_err "pca/eval.json: field 'pca.lang\[5\]'"
expect 2 "a folder with neither run.json nor eval.json" -- "$ECR" report "$T/bad/empty" --out "$T/bad/out5"
one_line_err "bad/empty: neither run.json nor eval.json"
expect 2 "a missing folder" -- "$ECR" report "$T/bad/missing" --out "$T/bad/out6"
one_line_err "bad/missing: not a directory"
if ls "$T/bad" | grep -q '^out'; then bad "refused reports created folders: $(ls "$T/bad")"; else ok; fi
echo '{"preset": 3}' >"$T/bad/empty/run.json"
expect 2 "run.json preset of the wrong type" -- "$ECR" report "$T/bad/empty" --out "$T/bad/out7"
one_line_err "empty/run.json: field 'preset'"

echo "cli_report: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
