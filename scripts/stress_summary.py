#!/usr/bin/env python3
"""stress_summary.py RESULTS: the Markdown summary of the stress study (scripts/experiment.sh
--study stress), on stdout.

RESULTS holds probe-lrLR-sSEED and stress-METHOD-sSEED run folders, each with run.json,
config.json (the vocabulary), eval.json ("stability", from `ecr eval --log`) and the whole
training log.jsonl; a diverged run has run.json "diverged" and its log only. Per group (the
probes by learning rate, the protocol by method), over its seeds:
  blow-ups      runs whose training loss rose above ln(vocab) + 1 nats at some step: worse
                than a uniform guess over the vocabulary, which is where every run starts
  diverged      runs stopped by a non-finite loss
  steps above   how many steps the loss spent above that line (mean over seeds)
  peak loss     the highest training loss of the run (mean over seeds)
  spikes / 1k   loss spikes per 1,000 steps (ecr eval: loss > mean + 3 std of the previous
                50 steps)
  grad-norm CV  std / mean of the gradient norm over the run
  final loss    the mean training loss of the last 20 steps: mean, sample std and the range
                (max - min) over seeds, the seed spread the issue asks for
Only the training log is measured (the protocol has no validation passes)."""
import json
import math
import os
import re
import statistics
import sys

LAST = 20  # steps averaged for the final loss


def load_run(d):
    run = json.load(open(os.path.join(d, "run.json")))
    cfg_path = os.path.join(d, "config.json")
    vocab = json.load(open(cfg_path))["vocab_size"] if os.path.exists(cfg_path) else 8192
    steps = [json.loads(l) for l in open(os.path.join(d, "log.jsonl")) if '"loss"' in l]
    loss = [r["loss"] for r in steps]
    st = {}
    ev = os.path.join(d, "eval.json")
    if os.path.exists(ev):
        st = json.load(open(ev)).get("stability", {})
    limit = math.log(vocab) + 1.0
    blow = [r["step"] for r in steps if r["loss"] > limit]
    return {
        "diverged": bool(run.get("diverged")),
        "blowup": bool(blow) or bool(run.get("diverged")),
        "first_blowup": blow[0] if blow else None,
        "above": len(blow),
        "peak": max(loss) if loss else None,
        "spikes": st.get("spikes_per_1k_steps"),
        "gcv": st.get("grad_norm_cv"),
        "final": statistics.fmean(loss[-LAST:]) if len(loss) >= LAST and not run.get("diverged") else None,
        "steps": len(steps),
    }


def ms(v, d=3):
    v = [x for x in v if x is not None]
    if not v:
        return "–"
    if len(v) == 1:
        return f"{v[0]:.{d}f}"
    return f"{statistics.fmean(v):.{d}f} ± {statistics.stdev(v):.{d}f}"


def spread(v):
    v = [x for x in v if x is not None]
    return f"{max(v) - min(v):.3f}" if len(v) > 1 else "–"


def table(title, groups):
    out = [f"### {title}", "",
           "| group | seeds | blow-ups | diverged | steps above | peak loss | spikes / 1k | grad-norm CV | final loss "
           "| final-loss range |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, runs in groups:
        n = len(runs)
        out.append(f"| {name} | {n} | {sum(r['blowup'] for r in runs)}/{n} | {sum(r['diverged'] for r in runs)}/{n} "
                   f"| {ms([r['above'] for r in runs], 1)} | {ms([r['peak'] for r in runs], 2)} | {ms([r['spikes'] for r in runs], 1)} "
                   f"| {ms([r['gcv'] for r in runs])} | {ms([r['final'] for r in runs])} "
                   f"| {spread([r['final'] for r in runs])} |")
    return out + [""]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: stress_summary.py RESULTS")
    res = sys.argv[1]
    probes, stress = {}, {}
    for name in sorted(os.listdir(res)):
        d = os.path.join(res, name)
        m = re.fullmatch(r"probe-lr([0-9.e+-]+)-s(\d+)", name)
        k = re.fullmatch(r"stress-(.+)-s(\d+)", name)
        if not os.path.exists(os.path.join(d, "run.json")):
            continue
        if m:
            probes.setdefault(m.group(1), []).append(load_run(d))
        elif k:
            stress.setdefault(k.group(1), []).append(load_run(d))
    lines = ["# Stress study: training without warm-up or clipping, at a constant high learning rate", "",
             "tiny students, 300 steps of 2,048 tokens, --warmup 0 --grad-clip 0, --min-lr = --lr.",
             "Made by scripts/stress_summary.py from the runs in this folder (definitions in its header).", ""]
    if probes:
        lines += table("Probes: plain LM by learning rate",
                       [(f"lr {lr}", probes[lr]) for lr in sorted(probes, key=float)])
    order = ["none", "ecr", "ecr+orth", "ecr+orth+rel", "kd"]
    if stress:
        keys = sorted(stress, key=lambda k: (order.index(k) if k in order else len(order), k))
        lines += table("The protocol, by method", [(k, stress[k]) for k in keys])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
