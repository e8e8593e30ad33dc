#!/usr/bin/env bash
# cli_report.sh — `ecr report` on synthetic run folders written here with known numbers:
# mean ± sample std per group in report.md (e.g. P@1 0.5 and 0.7 -> "0.600 ± 0.141"), group
# order, the three tables kept apart by space (language model and stability; geometry of h
# for every group; geometry of u only for groups with u, the others named under it), P@1 per
# language on h and on u, values taken from log.jsonl (loss, bits/byte, effective ranks,
# stability), warnings for missing pieces, well-formed SVGs (h and u versions of the P@1 and
# trade-off plots) that name the groups and axes, byte-identical output on a second run,
# and the refusals (exit 2, one line naming the file; nothing written).
set -u
. "$(dirname "$0")/cli_lib.sh"

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
# section FILE HEADING: the lines of FILE after the line "## HEADING", up to the next "## "
section() { awk -v h="## $2" '$0 == h {on = 1; next} on && /^## / {exit} on' "$1"; }

# ---- synthetic runs --------------------------------------------------------------------------
# h: anisotropy 0.3, label transfer 0.5, silhouette -0.05, CKA 0.7, kNN 0.2, no zh_CN P@1;
# u: anisotropy 0.1, label transfer 0.6, silhouette 0.15, CKA 0.8, kNN 0.35.
# tiny/none  seeds 1, 2: bpb 1.50/1.52, loss 4.10/4.14; h only: P@1 0.5/0.7 (de 0.4/0.6),
#            eff. rank 70/74; seed 1 has a loss spike at step 120 (spikes/1k 5 vs 0),
#            grad_norm 1/3 (CV 0.5), every 10th step clipped (share 0.1); seed 2's log ends
#            in a truncated line.
# tiny/ecr   seed 3: one seed; bpb 1.55, loss 4.30; h: P@1 0.3 (de 0.25), eff. rank 50;
#            u: P@1 0.8 (de 0.7), eff. rank 78, agreement 0.45.
# tiny, tag "ecr <K=64> & λ=0.05"  seeds 1, 2: h P@1 0.2/0.4, eff. rank 40/44;
#            u P@1 0.8/0.9 (de 0.7/0.8), eff. rank 80/82, anchor agreement 0.4/0.6.
# small/kd   seed 1: h only; eval.json with "stability" (1.5 spikes/1k, CV 0.25, clipped
#            share 0.05), no log.jsonl.
# small/feat seed 1: log.jsonl only, with val_eff_rank_u (so it has u): val bpb 1.7, val
#            loss 4.5 + 3 e^-4 + 0.01 = 4.565, eff. rank h 41, u 56 from the last record.
# 2x128/?    no run.json (config.json + eval.json only, h only).
# Every log.jsonl: elapsed_s = 0.1 x seed x step (train s/step 0.1 x seed).
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
                   "clipped": s % 10 == 0, "tokens": 4096 * s, "elapsed_s": 0.1 * seed * s, "new_field": [1]}
            f.write(json.dumps(rec) + "\n")
            if s % 50 == 0:
                v = {"step": s, "val_loss": round(4.5 + 3 * math.exp(-s / 50) + 0.01 * seed, 6),
                     "val_bpb": 1.7, "val_tokens": 1000, "val_eff_rank": 20 + s / 10 + seed}
                if eff_u:
                    v["val_eff_rank_u"] = 30 + s / 8 + seed
                    v["val_p1"] = 0.1 + s / 1000 + seed / 100
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

def geom_h(p1, de, er):
    return {"dim": 64, "effective_rank": er, "anisotropy": 0.3, "silhouette": -0.05,
            "p1": {"mean": p1, "per_lang": {"de": de, "ja": p1, "zh_CN": None}},
            "label_transfer": {"mean": 0.5, "per_lang": {"de": 0.5}},
            "cka": 0.7, "knn_overlap10": 0.2, "anchor_agreement": None, "seconds": 0.1}

def geom_u(p1, de, er, agree):
    return {"dim": 32, "effective_rank": er, "anisotropy": 0.1, "silhouette": 0.15,
            "p1": {"mean": p1, "per_lang": {"de": de, "ja": p1, "zh_CN": p1}},
            "label_transfer": {"mean": 0.6, "per_lang": {"de": 0.6}},
            "cka": 0.8, "knn_overlap10": 0.35, "anchor_agreement": agree, "seconds": 0.1}

def evaljson(bpb, loss, h, u=None, pca_shift=None, stability=None):
    e = {"model": "m", "data": "d", "texts": 40,
         "lm": {"overall": {"loss": loss, "ppl": math.exp(loss), "bpb": bpb, "tokens": 1,
                            "bytes": 1, "texts": 40},
                "per_lang": {}},
         "geometry": {"texts": 40, "english": "en", "teacher": None, "anchors": None,
                      "notes": [], "h": h, "u": u}}
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
run("none1", "tiny", "none", None, 1, evaljson(1.50, 4.10, geom_h(0.5, 0.4, 70.0), pca_shift=0),
    spike_at=120)
run("none2", "tiny", "none", None, 2, evaljson(1.52, 4.14, geom_h(0.7, 0.6, 74.0), pca_shift=1),
    truncated=True)
run("tag1", "tiny", "ecr", TAG, 1,
    evaljson(1.60, 4.20, geom_h(0.2, 0.1, 40.0), geom_u(0.8, 0.7, 80.0, 0.4), pca_shift=3),
    eff_u=True)
run("tag2", "tiny", "ecr", TAG, 2,
    evaljson(1.62, 4.24, geom_h(0.4, 0.3, 44.0), geom_u(0.9, 0.8, 82.0, 0.6)), eff_u=True)
run("ecr3", "tiny", "ecr", None, 3,
    evaljson(1.55, 4.30, geom_h(0.3, 0.25, 50.0), geom_u(0.8, 0.7, 78.0, 0.45), pca_shift=2),
    eff_u=True)
run("kd1", "small", "kd", None, 1,
    evaljson(1.40, 3.90, geom_h(0.3, 0.2, 90.0),
             stability={"spikes_per_1k_steps": 1.5, "grad_norm_cv": 0.25, "clipped_share": 0.05}),
    logs=False)
run("feat1", "small", "feat", None, 1, eff_u=True)
d = os.path.join(T, "runs", "norunjson")
os.makedirs(d)
write(os.path.join(d, "config.json"), {"hidden_size": 128, "num_hidden_layers": 2})
write(os.path.join(d, "eval.json"), evaljson(1.9, 4.0, geom_h(0.1, 0.1, 10.0)))
EOF
R="$T/runs"
RUNS=("$R/none1" "$R/tag2" "$R/kd1" "$R/norunjson" "$R/feat1" "$R/ecr3" "$R/tag1" "$R/none2")

# ---- usage -------------------------------------------------------------------------------------
expect 0 "report --help" -- "$ECR" report --help
has_fixed "$T/out" "usage: ecr report RUN_DIR... --out REPORT_DIR" "--help prints usage on stdout"
for w in --title --quiet run.json log.jsonl eval.json tradeoff.svg tradeoff_u.svg p1_bars_u.svg \
         pca_label.svg "geometry of h" "geometry of u" "clipped share" "exit status"; do
    has_fixed "$T/out" "$w" "--help documents $w"
done
expect 0 "ecr --help" -- "$ECR" --help
has_fixed "$T/out" "report" "ecr --help lists report"
expect 2 "report without RUN_DIR" -- "$ECR" report --out "$T/none"
has_fixed "$T/err" "no RUN_DIR" "no runs is refused"
expect 2 "report without --out" -- "$ECR" report "$R/none1"
expect 2 "report with an unknown flag" -- "$ECR" report "$R/none1" --out "$T/x" --bogus
if [ -e "$T/none" ] || [ -e "$T/x" ]; then bad "a refused report created its folder"; else ok; fi

# ---- the report ----------------------------------------------------------------------------------
O="$T/rep"
expect 0 "report on 8 runs" -- "$ECR" report "${RUNS[@]}" --out "$O/sub" --title "Synthetic | test"
cp "$T/err" "$T/err_main"
PLOTS="loss_train loss_valid eff_rank p1_steps pca_lang pca_label p1_bars p1_bars_u tradeoff tradeoff_u"
for f in report.md $(for p in $PLOTS; do echo "$p.svg"; done); do
    if [ -s "$O/sub/$f" ]; then ok; else bad "$f not written"; fi
    has_fixed "$T/out" "$O/sub/$f" "stdout names $f"
done
if [ "$(wc -l <"$T/out")" -eq 11 ]; then ok; else bad "stdout should list 11 files: $(cat "$T/out")"; fi
if ls "$O/sub" | grep -q tmp; then bad "temporary files left: $(ls "$O/sub")"; else ok; fi
has_fixed "$T/err_main" "8 runs in 6 groups" "progress names runs and groups"
has_fixed "$T/err_main" "kd1: no log.jsonl" "a run without a log is reported"
has_fixed "$T/err_main" "left out of loss_train" "the plots it misses are named"
has_fixed "$T/err_main" "none2/log.jsonl:205: truncated last line skipped" "a truncated last log line is skipped"
has_fixed "$T/err_main" "norunjson: no log.jsonl" "the run without run.json is reported"
has_fixed "$T/err_main" "feat1: no eval.json: left out of pca_lang, pca_label, p1_bars, p1_bars_u, tradeoff, tradeoff_u" \
    "a run with u but no eval.json is left out of the u plots too"

# a run stopped by a non-finite loss (run.json "diverged", as scripts/experiment.sh writes it)
mkdir -p "$T/div" && cp "$R/none1/log.jsonl" "$T/div/"
printf '{"preset": "tiny", "method": "none", "tag": "stress", "seed": 4, "steps": 200, "diverged": "step 57: loss is NaN"}\n' \
    >"$T/div/run.json"
expect 0 "report with a diverged run" -- "$ECR" report "$R/none1" "$T/div" --out "$T/rep_div" --quiet
has_fixed "$T/rep_div/report.md" "Diverged (training stopped by a non-finite loss" "diverged runs are listed"
has_fixed "$T/rep_div/report.md" "/div\` (step 57: loss is NaN)." "with why they stopped"
if grep -q 'Diverged' "$O/sub/report.md"; then bad "a report without diverged runs lists some"; else ok; fi

M="$O/sub/report.md"
has_fixed "$M" "# Synthetic \| test" "title (escaped for Markdown)"
has_fixed "$M" "8 runs in 6 groups" "run count"
hasnt "$M" "space" "no space column or footnote any more"
hasnt "$M" "## Summary" "the one summary table is gone"
TAGM='ecr \<K=64\> & λ=0.05'
ROWS='^| \(tiny\|small\|2x128\) |'

# 1. language model and stability: every group
section "$M" "Language model and stability" >"$T/lm"
has_fixed "$T/lm" "| size | method/tag | seeds | val bits/byte | val loss | spikes/1k steps¹ | grad-norm CV¹ | clipped share¹ |" "LM header"
# tiny/none: bpb 1.50, 1.52; loss 4.10, 4.14; spikes 5, 0 (from the log); CV 0.5; clipped 0.1
has_fixed "$T/lm" "| tiny | none | 2 | 1.510 ± 0.014 | 4.120 ± 0.028 | 2.50 ± 3.54 | 0.500 ± 0.000 | 0.100 ± 0.000 |" "LM: tiny/none (stability from log.jsonl, spike in one seed)"
has_fixed "$T/lm" "| tiny | ecr | 1 | 1.550 | 4.300 | 0.00 | 0.500 | 0.100 |" "LM: one seed, the mean alone"
has_fixed "$T/lm" "| tiny | $TAGM | 2 | 1.610 ± 0.014 | 4.220 ± 0.028 | 0.00 ± 0.00 | 0.500 ± 0.000 | 0.100 ± 0.000 |" "LM: tag row (escaped)"
has_fixed "$T/lm" "| small | kd | 1 | 1.400 | 3.900 | 1.50 | 0.250 | 0.050 |" "LM: stability from eval.json"
has_fixed "$T/lm" "| small | feat | 1 | 1.700 | 4.565 | 0.00 | 0.500 | 0.100 |" "LM: bits/byte and loss from the log's last validation record"
has_fixed "$T/lm" "| 2x128 | ? | 1 | 1.900 | 4.000 | – | – | – |" "LM: run without run.json (LxD, method ?); dashes"
has_fixed "$T/lm" "| clipped share¹ | train s/step |" "LM header: seconds per step last"
has_fixed "$T/lm" "| 0.100 ± 0.000 | 0.150 ± 0.071 |" "s/step: seeds 1 and 2 (0.1, 0.2) of tiny/none"
has_fixed "$T/lm" "| tiny | ecr | 1 | 1.550 | 4.300 | 0.00 | 0.500 | 0.100 | 0.300 |" "s/step: seed 3"
has_fixed "$T/lm" "| small | kd | 1 | 1.400 | 3.900 | 1.50 | 0.250 | 0.050 | – |" "s/step: no log.jsonl, a dash"
has_fixed "$T/lm" "| 1.700 | 4.565 | 0.00 | 0.500 | 0.100 | 0.100 |" "s/step of a run with a log only"
has_fixed "$T/lm" "Train s/step: wall-clock seconds per training step" "s/step is explained"
has_fixed "$T/lm" "Stability computed from log.jsonl: " "the stability source is stated"
has_fixed "$T/lm" "log.jsonl (no eval.json value): \`$R/feat1\`." "the run whose loss came from the log is named"
order=$(grep "$ROWS" "$T/lm" | cut -d'|' -f2-3 | tr -d ' ' | tr '\n' ';')
if [ "$order" = "tiny|none;tiny|ecr;tiny|ecr\<K=64\>&λ=0.05;small|kd;small|feat;2x128|?;" ]; then ok
else bad "group order: $order"; fi

# 2. geometry of h: every group, from geometry.h (an ECR run is scored on h here too)
section "$M" "Geometry of h (the pooled hidden state; every model has it)" >"$T/gh"
has_fixed "$T/gh" "| size | method/tag | seeds | eff. rank | anisotropy | P@1 mean | label transfer | silhouette | CKA¹ | kNN@10¹ |" "h header (no anchor agreement)"
has_fixed "$T/gh" "| tiny | none | 2 | 72.0 ± 2.8 | 0.300 ± 0.000 | 0.600 ± 0.141 | 0.500 ± 0.000 | -0.050 ± 0.000 | 0.700 ± 0.000 | 0.200 ± 0.000 |" "h: tiny/none"
has_fixed "$T/gh" "| tiny | ecr | 1 | 50.0 | 0.300 | 0.300 | 0.500 | -0.050 | 0.700 | 0.200 |" "h: an ECR run on h"
has_fixed "$T/gh" "| tiny | $TAGM | 2 | 42.0 ± 2.8 | 0.300 ± 0.000 | 0.300 ± 0.141 | 0.500 ± 0.000 |" "h: tag row"
has_fixed "$T/gh" "| small | kd | 1 | 90.0 | 0.300 | 0.300 |" "h: small/kd"
has_fixed "$T/gh" "| small | feat | 1 | 41.0 | – | – | – | – | – | – |" "h: eff. rank from val_eff_rank"
has_fixed "$T/gh" "| 2x128 | ? | 1 | 10.0 | 0.300 | 0.100 |" "h: 2x128"
if [ "$(grep -c "$ROWS" "$T/gh")" -eq 6 ]; then ok; else bad "h table should have 6 rows: $(cat "$T/gh")"; fi
has_fixed "$T/gh" "(val_eff_rank): \`$R/feat1\`." "h eff. rank from the log is stated"

# 3. geometry of u: only the groups with u; the others named in one line under it
section "$M" "Geometry of u (the projection P h / ‖P h‖; models trained with ECR, feat or rkd)" >"$T/gu"
has_fixed "$T/gu" "| size | method/tag | seeds | eff. rank | anisotropy | P@1 mean | label transfer | silhouette | CKA¹ | kNN@10¹ | anchor agreement² |" "u header"
has_fixed "$T/gu" "| tiny | ecr | 1 | 78.0 | 0.100 | 0.800 | 0.600 | 0.150 | 0.800 | 0.350 | 0.450 |" "u: tiny/ecr"
has_fixed "$T/gu" "| tiny | $TAGM | 2 | 81.0 ± 1.4 | 0.100 ± 0.000 | 0.850 ± 0.071 | 0.600 ± 0.000 | 0.150 ± 0.000 | 0.800 ± 0.000 | 0.350 ± 0.000 | 0.500 ± 0.141 |" "u: tag row, agreement 0.4/0.6"
has_fixed "$T/gu" "| small | feat | 1 | 56.0 | – | – | – | – | – | – | – |" "u: a run with u only in its log (val_eff_rank_u)"
hasnt "$T/gu" "| tiny | none |" "u: tiny/none (h only) is left out"
hasnt "$T/gu" "| small | kd |" "u: small/kd (h only) is left out"
hasnt "$T/gu" "| 2x128 |" "u: 2x128 (h only) is left out"
has_fixed "$T/gu" "Left out (no run of the group has u): tiny · none, small · kd, 2x128 · ?." "u: the left-out groups are named"
if [ "$(grep -c "$ROWS" "$T/gu")" -eq 3 ]; then ok; else bad "u table should have 3 rows: $(cat "$T/gu")"; fi
has_fixed "$T/gu" "(val_eff_rank_u): \`$R/feat1\`." "u eff. rank from the log is stated"

# P@1 per language: on h (every group; zh_CN has no value on h) and on u (groups with u)
section "$M" "Cross-lingual P@1 per language on h" >"$T/ph"
has_fixed "$T/ph" "| size | method/tag | seeds | de | ja | mean |" "P@1 on h header (no zh_CN)"
has_fixed "$T/ph" "| tiny | none | 2 | 0.500 ± 0.141 | 0.600 ± 0.141 | 0.600 ± 0.141 |" "P@1 on h, tiny/none"
has_fixed "$T/ph" "| tiny | ecr | 1 | 0.250 | 0.300 | 0.300 |" "P@1 on h, an ECR run"
has_fixed "$T/ph" "| small | feat | 1 | – | – | – |" "P@1 on h lists every group"
if [ "$(grep -c "$ROWS" "$T/ph")" -eq 6 ]; then ok; else bad "P@1 on h should have 6 rows"; fi
section "$M" "Cross-lingual P@1 per language on u" >"$T/pu"
has_fixed "$T/pu" "| size | method/tag | seeds | de | ja | zh_CN | mean |" "P@1 on u header"
has_fixed "$T/pu" "| tiny | ecr | 1 | 0.700 | 0.800 | 0.800 | 0.800 |" "P@1 on u, one seed"
has_fixed "$T/pu" "| tiny | $TAGM | 2 | 0.750 ± 0.071 | 0.850 ± 0.071 | 0.850 ± 0.071 | 0.850 ± 0.071 |" "P@1 on u, tag"
hasnt "$T/pu" "| tiny | none |" "P@1 on u leaves out groups without u"
has_fixed "$T/pu" "Left out (no run of the group has u): tiny · none, small · kd, 2x128 · ?." "P@1 on u names the left-out groups"
if [ "$(grep -c "$ROWS" "$T/pu")" -eq 3 ]; then ok; else bad "P@1 on u should have 3 rows"; fi

for f in $PLOTS; do
    has_fixed "$M" "]($f.svg)" "report.md links $f.svg"
done
has_fixed "$M" '`'"$R/none2"'`' "runs are listed"

# ---- SVGs ----------------------------------------------------------------------------------------
TAGX='ecr &lt;K=64&gt; &amp; λ=0.05'
for f in "$O"/sub/*.svg; do
    well_formed "$f"
    has_fixed "$f" 'viewBox="0 0 ' "$(basename "$f") has a viewBox"
    has_fixed "$f" '<title>' "$(basename "$f") has a title"
    if grep -qE 'font-size="([0-9]|1[01])"' "$f"; then bad "$(basename "$f"): a font under 12 px"; else ok; fi
    if grep -qiE 'nan|inf"' "$f"; then bad "$(basename "$f") holds a NaN/inf"; else ok; fi
done
S="$O/sub"
has_fixed "$S/loss_train.svg" ">step</text>" "loss_train x axis title"
has_fixed "$S/loss_train.svg" ">training loss (nats/token)</text>" "loss_train y axis title"
has_fixed "$S/loss_train.svg" ">none</text>" "loss_train legend: none"
has_fixed "$S/loss_train.svg" ">$TAGX</text>" "loss_train legend: the tag, XML-escaped"
has_fixed "$S/loss_train.svg" ">tiny</text>" "loss_train panel title"
hasnt "$S/loss_train.svg" ">kd</text>" "kd has no log: not in loss_train"
has_fixed "$S/loss_train.svg" ">feat</text>" "loss_train legend: feat (log only)"
hasnt "$S/loss_train.svg" ">2x128</text>" "no panel for a size without logs"
has_fixed "$S/loss_valid.svg" ">validation loss (nats/token)</text>" "loss_valid y axis title"
has_fixed "$S/eff_rank.svg" ">effective rank (u; h without ECR)</text>" "eff_rank names the spaces"
has_fixed "$S/p1_steps.svg" ">P@1 on h during training</text>" "p1_steps from the runs that log val_p1"
has_fixed "$S/report.md" "![P@1 on h vs step](p1_steps.svg)" "report.md links p1_steps.svg"
# p1_bars.svg: P@1 on h for every group with it; p1_bars_u.svg: on u, groups with u only
has_fixed "$S/p1_bars.svg" ">Cross-lingual retrieval P@1 per language on h</text>" "p1_bars title says h"
has_fixed "$S/p1_bars.svg" ">P@1 on h</text>" "p1_bars y axis"
has_fixed "$S/p1_bars.svg" ">ja</text>" "p1_bars language tick"
hasnt "$S/p1_bars.svg" ">zh_CN</text>" "p1_bars: zh_CN has no P@1 on h"
has_fixed "$S/p1_bars.svg" ">mean</text>" "p1_bars mean cluster"
has_fixed "$S/p1_bars.svg" ">none</text>" "p1_bars legend has none"
has_fixed "$S/p1_bars.svg" ">kd</text>" "p1_bars legend has kd"
has_fixed "$S/p1_bars.svg" ">$TAGX</text>" "p1_bars legend has the tag"
has_fixed "$S/p1_bars.svg" ">small</text>" "p1_bars small panel"
has_fixed "$S/p1_bars_u.svg" ">Cross-lingual retrieval P@1 per language on u</text>" "p1_bars_u title says u"
has_fixed "$S/p1_bars_u.svg" ">P@1 on u</text>" "p1_bars_u y axis"
has_fixed "$S/p1_bars_u.svg" ">zh_CN</text>" "p1_bars_u language tick"
has_fixed "$S/p1_bars_u.svg" ">ecr</text>" "p1_bars_u legend has ecr"
has_fixed "$S/p1_bars_u.svg" ">$TAGX</text>" "p1_bars_u legend has the tag"
hasnt "$S/p1_bars_u.svg" ">none</text>" "p1_bars_u: no group without u"
hasnt "$S/p1_bars_u.svg" ">kd</text>" "p1_bars_u: kd has no u"
hasnt "$S/p1_bars_u.svg" ">small</text>" "p1_bars_u: no small panel (feat has no P@1 on u)"
# tradeoff.svg: bits/byte vs P@1 on h (every group); tradeoff_u.svg: P@1 on u
has_fixed "$S/tradeoff.svg" ">validation bits/byte (lower is better)</text>" "tradeoff x axis"
has_fixed "$S/tradeoff.svg" ">P@1 mean on h (higher is better)</text>" "tradeoff y axis on h"
has_fixed "$S/tradeoff.svg" ">$TAGX</text>" "tradeoff point label"
has_fixed "$S/tradeoff.svg" ">none</text>" "tradeoff has none"
has_fixed "$S/tradeoff.svg" ">small</text>" "tradeoff small panel"
has_fixed "$S/tradeoff_u.svg" ">P@1 mean on u (higher is better)</text>" "tradeoff_u y axis"
has_fixed "$S/tradeoff_u.svg" ">$TAGX</text>" "tradeoff_u point label"
has_fixed "$S/tradeoff_u.svg" ">ecr</text>" "tradeoff_u has ecr"
hasnt "$S/tradeoff_u.svg" ">none</text>" "tradeoff_u: no group without u"
hasnt "$S/tradeoff_u.svg" ">small</text>" "tradeoff_u: no small panel"
has_fixed "$S/pca_lang.svg" ">PC1 (23.4% var)</text>" "pca x axis: explained variance"
has_fixed "$S/pca_lang.svg" ">PC2 (10.1% var)</text>" "pca y axis"
has_fixed "$S/pca_lang.svg" ">zh_CN</text>" "pca_lang legend"
has_fixed "$S/pca_label.svg" ">impress</text>" "pca_label legend"
has_fixed "$S/pca_lang.svg" "tiny · none (u, seed 1)" "pca panel: first seed of the group"
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
has_fixed "$T/err" "loss_train.svg not written" "skipped plots are stated"
has_fixed "$T/err" "pca_lang.svg not written" "skipped pca is stated"
if [ -e "$T/rep3/loss_train.svg" ] || [ -e "$T/rep3/pca_lang.svg" ]; then bad "an empty plot was written"; else ok; fi
has_fixed "$T/rep3/report.md" "Not drawn:" "report.md lists the plots not drawn"
has_fixed "$T/rep3/report.md" "](p1_bars.svg)" "report.md links the plots drawn"
# no run has u: no u plots, and the u sections say why in one line
has_fixed "$T/err" "p1_bars_u.svg not written: no run has u" "p1_bars_u is skipped without u"
has_fixed "$T/err" "tradeoff_u.svg not written: no run has u" "tradeoff_u is skipped without u"
if [ -e "$T/rep3/p1_bars_u.svg" ] || [ -e "$T/rep3/tradeoff_u.svg" ]; then bad "a u plot was written without u"; else ok; fi
M="$T/rep3/report.md"
section "$M" "Geometry of u (the projection P h / ‖P h‖; models trained with ECR, feat or rkd)" >"$T/gu3"
has_fixed "$T/gu3" "No run has u: none of the models has a projection." "u table: no run has u"
if grep -q '^|' "$T/gu3"; then bad "u table without u has rows: $(cat "$T/gu3")"; else ok; fi
has_fixed "$M" "| small | kd | 1 | 90.0 | 0.300 | 0.300 |" "the h table is still there"

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
python3 - "$R/tag1/eval.json" "$T/bad/type/eval.json" <<'EOF'
import json, sys
e = json.load(open(sys.argv[1])); e["geometry"]["h"]["p1"]["per_lang"]["ja"] = [0.5]
json.dump(e, open(sys.argv[2], "w"))
EOF
expect 2 "eval.json h field of the wrong type" -- "$ECR" report "$T/bad/type" --out "$T/bad/out3"
one_line_err "type/eval.json: field 'geometry.h.p1.per_lang.ja': expected a number"
python3 - "$R/tag1/eval.json" "$T/bad/type/eval.json" <<'EOF'
import json, sys
e = json.load(open(sys.argv[1])); e["lm"]["overall"]["loss"] = "low"
json.dump(e, open(sys.argv[2], "w"))
EOF
expect 2 "eval.json loss of the wrong type" -- "$ECR" report "$T/bad/type" --out "$T/bad/out3"
one_line_err "type/eval.json: field 'lm.overall.loss': expected a number"
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

# Crowded trade-off: eight groups at the same point. Each label gets a place of its own (no
# two at the same position), and the ones pushed past the first ring get a leader line.
python3 - "$T/crowd" <<'EOF' || bad "could not write the crowded runs"
import json, os, sys
for i in range(8):
    d = os.path.join(sys.argv[1], f"c{i}")
    os.makedirs(d)
    json.dump({"preset": "tiny", "method": "ecr", "tag": f"crowd-{i}", "seed": 1},
              open(f"{d}/run.json", "w"))
    h = {"dim": 8, "effective_rank": 5, "anisotropy": 0.1, "silhouette": 0,
         "p1": {"mean": 0.5, "per_lang": {"de": 0.5}}, "label_transfer": {"mean": 0.5, "per_lang": {}},
         "cka": None, "knn_overlap10": None, "anchor_agreement": None, "seconds": 0}
    lm = {"overall": {"loss": 4, "ppl": 55, "bpb": 1.6, "tokens": 1, "bytes": 1, "texts": 1},
          "per_lang": {}}
    json.dump({"lm": lm, "geometry": {"texts": 1, "h": h, "u": None}}, open(f"{d}/eval.json", "w"))
EOF
expect 0 "report over eight coincident points" -- "$ECR" report "$T"/crowd/c* --quiet --out "$T/crowd/out"
sed '/<g id="legend">/q' "$T/crowd/out/tradeoff.svg" >"$T/crowd/panel.svg"    # without the legend
n_lab=$(grep -c '>crowd-[0-7]</text>' "$T/crowd/panel.svg")
n_pos=$(grep '>crowd-[0-7]</text>' "$T/crowd/panel.svg" |
        sed 's/.*x="\([^"]*\)" y="\([^"]*\)".*/\1 \2/' | sort -u | wc -l)
if [ "$n_lab" = 8 ] && [ "$n_pos" = 8 ]; then ok; else bad "crowded labels: $n_lab labels at $n_pos places (want 8 at 8)"; fi
has_fixed "$T/crowd/out/tradeoff.svg" 'stroke="#9a9a9a" stroke-width="0.80"' "crowded labels have leader lines"

cli_done
