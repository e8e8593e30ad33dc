#!/usr/bin/env python3
"""precision_summary.py RESULTS EXPERIMENT: the Markdown summary of scripts/precision.sh.

RESULTS holds NAME-fp32 / NAME-bf16 run folders (eval.json each); EXPERIMENT the main
experiment's runs (main-tiny-ecr-s1..3, fp32), whose seed-to-seed spread the bf16 ECR run
is set against. Three tables:
  1. each pair: validation bits/byte in fp32 and bf16, the relative difference (need < 1%),
     and the geometry of h and u in both;
  2. inference: the demo ECR model (trained in fp32) evaluated in fp32 and in bf16, every
     geometry metric's difference (need <= 0.005);
  3. tiny-ecr-bf16-s1 against main-tiny-ecr-s1..3: mean +- sample std of the fp32 seeds, the
     bf16 value, and whether it lies within mean +- 2 std.
A run that is missing is shown as a dash, and its checks are left out."""
import json
import os
import statistics
import sys

GEO = [("effective_rank", "eff. rank"), ("p1.mean", "P@1"), ("label_transfer.mean", "label transfer"),
       ("cka", "CKA"), ("knn_overlap10", "kNN@10"), ("anchor_agreement", "anchor agr.")]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        return None


def get(j, dotted):
    for k in dotted.split("."):
        if not isinstance(j, dict) or k not in j:
            return None
        j = j[k]
    return j


def fmt(x, d=4):
    return "–" if x is None else f"{x:.{d}f}"


def main():
    res, exp = sys.argv[1], sys.argv[2]
    out = ["# bf16 against fp32 (scripts/precision.sh)", ""]
    engines = set()
    for name in sorted(os.listdir(res)):
        e = os.path.join(res, name, "engine.txt")
        if name.endswith("bf16") or "bf16" in name:
            if os.path.exists(e):
                engines.add(open(e).read().strip())
    for e in sorted(engines):
        out.append(f"bf16 runs: `{e}`")
    out += ["", "## Training: each run in fp32 and in bf16, evaluated in its own precision", "",
            "| run | bits/byte fp32 | bits/byte bf16 | difference | < 1% | P@1 h fp32 / bf16 | P@1 u fp32 / bf16 "
            "| eff. rank h fp32 / bf16 |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    ok_all = True
    for base in ("demo-none", "demo-ecr", "small-none"):
        a, b = load(f"{res}/{base}-fp32/eval.json"), load(f"{res}/{base}-bf16/eval.json")
        ba, bb = get(a, "lm.overall.bpb"), get(b, "lm.overall.bpb")
        diff = None if ba is None or bb is None else (bb - ba) / ba
        ok = None if diff is None else abs(diff) < 0.01
        ok_all &= ok is not False
        out.append(f"| {base} | {fmt(ba)} | {fmt(bb)} | {'–' if diff is None else f'{100 * diff:+.2f}%'} | "
                   f"{'–' if ok is None else ('yes' if ok else 'NO')} | "
                   f"{fmt(get(a, 'geometry.h.p1.mean'), 3)} / {fmt(get(b, 'geometry.h.p1.mean'), 3)} | "
                   f"{fmt(get(a, 'geometry.u.p1.mean'), 3)} / {fmt(get(b, 'geometry.u.p1.mean'), 3)} | "
                   f"{fmt(get(a, 'geometry.h.effective_rank'), 1)} / {fmt(get(b, 'geometry.h.effective_rank'), 1)} |")
    out += ["", "## Inference: the demo ECR model (trained in fp32), evaluated in fp32 and in bf16", "",
            "| space | metric | fp32 | bf16 | difference | <= 0.005 |", "| --- | --- | --- | --- | --- | --- |"]
    a, b = load(f"{res}/demo-ecr-fp32/eval.json"), load(f"{res}/demo-ecr-fp32/eval-bf16.json")
    rows = [("lm", "lm.overall.bpb", "bits/byte", False)]
    for sp in ("h", "u"):
        for key, label in GEO:
            rows.append((sp, f"geometry.{sp}.{key}", label, key != "effective_rank"))
    for sp, key, label, checked in rows:
        x, y = get(a, key), get(b, key)
        if x is None and y is None:
            continue
        d = None if x is None or y is None else y - x
        ok = None if d is None or not checked else abs(d) <= 0.005
        ok_all &= ok is not False
        out.append(f"| {sp} | {label} | {fmt(x)} | {fmt(y)} | {'–' if d is None else f'{d:+.4f}'} | "
                   f"{'–' if ok is None else ('yes' if ok else 'NO')} |")
    out += ["", "(effective rank is on a scale of tens and bits/byte has its own 1% check above; "
            "the 0.005 check is for the metrics in [0, 1])", "",
            "## The demo ECR run's geometry: bf16 against fp32, beside the seed-to-seed spread", "",
            "The spread is the sample std of the experiment's main-tiny-ecr-s1..3 (fp32, the same "
            "student trained 1,000 steps instead of 600): the yardstick for a difference that "
            "matters.", "",
            "| metric | fp32 | bf16 | abs. difference | seed std | within 1 std |",
            "| --- | --- | --- | --- | --- | --- |"]
    a, b = load(f"{res}/demo-ecr-fp32/eval.json"), load(f"{res}/demo-ecr-bf16/eval.json")
    seeds = [load(f"{exp}/main-tiny-ecr-s{s}/eval.json") for s in (1, 2, 3)]
    for sp in ("h", "u"):
        for key, label in GEO:
            k = f"geometry.{sp}.{key}"
            x, y = get(a, k), get(b, k)
            v = [get(s, k) for s in seeds if s is not None and get(s, k) is not None]
            if x is None or y is None or len(v) < 2:
                continue
            sd = statistics.stdev(v)
            ok = abs(y - x) <= sd
            ok_all &= ok
            out.append(f"| {label} ({sp}) | {x:.4f} | {y:.4f} | {abs(y - x):.4f} | {sd:.4f} | {'yes' if ok else 'NO'} |")
    out += ["",
            "## The ECR run in bf16 against the fp32 seed-to-seed spread (tiny, 1,000 steps)", "",
            "| metric | fp32 seeds 1-3 (mean ± std) | bf16 seed 1 | within mean ± 2 std |",
            "| --- | --- | --- | --- |"]
    seeds = [load(f"{exp}/main-tiny-ecr-s{s}/eval.json") for s in (1, 2, 3)]
    b = load(f"{res}/tiny-ecr-bf16-s1/eval.json")
    rows = [("bits/byte", "lm.overall.bpb")]
    for sp in ("h", "u"):
        for key, label in GEO:
            rows.append((f"{label} ({sp})", f"geometry.{sp}.{key}"))
    for label, key in rows:
        v = [get(s, key) for s in seeds if s is not None and get(s, key) is not None]
        y = get(b, key)
        if len(v) < 2:
            continue
        mu, sd = statistics.mean(v), statistics.stdev(v)
        ok = None if y is None else abs(y - mu) <= 2 * sd
        ok_all &= ok is not False
        out.append(f"| {label} | {mu:.4f} ± {sd:.4f} | {fmt(y)} | {'–' if ok is None else ('yes' if ok else 'NO')} |")
    out += ["", f"All checks that could be made: {'pass' if ok_all else 'at least one FAILS'}."]
    print("\n".join(out))


if __name__ == "__main__":
    main()
