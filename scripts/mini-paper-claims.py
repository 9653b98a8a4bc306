#!/usr/bin/env python3
"""The numbers behind results/mini-paper.md's comparison with the paper's conclusions (paper.md §4.5).

Reads the long table of a finished mini-paper sweep on stdin and prints Markdown:

    target/release/mlvf results experiments/mini-paper.toml --long --format csv | scripts/mini-paper-claims.py

Avg is the paper's convention: the plain mean of a cell's eight `primary_score`s (every synthetic benchmark reports
on 0-100). Seeds are averaged last, so every spread below is over the three seeds of a cell, and "noise" is the
median over cells of that spread. Standard library only.
"""

import csv
import statistics as st
import sys
from collections import defaultdict

LAYER_ORDER = ["18", "3-18", "3-18-23", "former", "latter", "all"]
FUSIONS = ["E_D", "E_M", "I_D", "I_M"]


def mean_sd(xs):
    xs = list(xs)
    return st.mean(xs), (st.stdev(xs) if len(xs) > 1 else 0.0)


def main():
    scores = defaultdict(dict)  # (encoder, fusion, layers, seed) -> {benchmark: score}
    yes_ratio = []
    benchmarks = set()
    for r in csv.DictReader(sys.stdin):
        if r["state"] != "ok" or not r["value"]:
            continue
        cell = (r["encoder"], r["fusion"], r["layers"] or "-", r["seed"])
        if r["metric"] == "primary_score":
            scores[cell][r["benchmark"]] = float(r["value"])
            benchmarks.add(r["benchmark"])
        elif r["metric"] == "pope_pred_yes_ratio":
            yes_ratio.append(float(r["value"]))

    # Avg per (cell, seed), only where all benchmarks are in.
    avg = {c: st.mean(v.values()) for c, v in scores.items() if len(v) == len(benchmarks)}
    by_cell = defaultdict(list)
    for (enc, fus, lay, _seed), a in avg.items():
        by_cell[(enc, fus, lay)].append(a)
    spreads = [mean_sd(v)[1] for v in by_cell.values() if len(v) > 1]
    noise = st.median(spreads) if spreads else 0.0  # one seed: no spread to measure
    encoders = sorted({c[0] for c in by_cell})

    print(f"Cells with all {len(benchmarks)} benchmarks: {len(avg)} runs, {len(by_cell)} cells "
          f"(seeds averaged). Seed noise: the median over cells of the Avg's spread over seeds is "
          f"**{noise:.2f}** points.")
    if yes_ratio:
        print(f"POPE: mean share of 'yes' answers over all runs **{st.mean(yes_ratio):.3f}** "
              f"(min {min(yes_ratio):.3f}, max {max(yes_ratio):.3f}).")
    print()

    print("Avg (mean ± spread over seeds) by paradigm and layer set:\n")
    print("| encoder | fusion | " + " | ".join(LAYER_ORDER) + " | mean | range over layer sets |")
    print("|---|---|" + "---|" * (len(LAYER_ORDER) + 2))
    for enc in encoders:
        base = by_cell.get((enc, "baseline", "-"))
        if base:
            m, s = mean_sd(base)
            print(f"| {enc} | baseline | " + " | ".join([f"{m:.2f} ± {s:.2f}"] + [""] * (len(LAYER_ORDER) - 1))
                  + f" | {m:.2f} | — |")
        for fus in FUSIONS:
            cells = [(lay, mean_sd(by_cell[(enc, fus, lay)])) for lay in LAYER_ORDER if (enc, fus, lay) in by_cell]
            if not cells:
                continue
            means = [m for _, (m, _) in cells]
            row = {lay: f"{m:.2f} ± {s:.2f}" for lay, (m, s) in cells}
            print(f"| {enc} | {fus} | " + " | ".join(row.get(l, "") for l in LAYER_ORDER)
                  + f" | {st.mean(means):.2f} | {max(means) - min(means):.2f} |")
    print()

    # Claim checks, over both encoders.
    print("Claim checks (seed-averaged cells, both encoders):\n")
    lay_means = {}
    for lay in LAYER_ORDER:
        ms = [st.mean(v) for (e, f, l), v in by_cell.items() if l == lay and f in FUSIONS]
        if ms:
            lay_means[lay] = st.mean(ms)
    best_lay = max(lay_means, key=lay_means.get)
    print("- Layer sets, mean Avg over paradigms and encoders: "
          + ", ".join(f"{l} {m:.2f}" for l, m in lay_means.items())
          + f"; best {best_lay}, spread {max(lay_means.values()) - min(lay_means.values()):.2f}.")
    fus_means = {f: st.mean(st.mean(v) for (e, ff, l), v in by_cell.items() if ff == f) for f in FUSIONS}
    fus_ranges = {}
    for f in FUSIONS:
        per_enc = []
        for enc in encoders:
            ms = [st.mean(v) for (e, ff, l), v in by_cell.items() if ff == f and e == enc]
            if ms:
                per_enc.append(max(ms) - min(ms))
        fus_ranges[f] = st.mean(per_enc)
    print("- Paradigms, mean Avg over layer sets and encoders: "
          + ", ".join(f"{f} {m:.2f}" for f, m in fus_means.items())
          + "; mean range over layer sets: " + ", ".join(f"{f} {r:.2f}" for f, r in fus_ranges.items()) + ".")
    above = below = 0
    for (enc, fus, lay), v in by_cell.items():
        if fus == "baseline" or (enc, "baseline", "-") not in by_cell:
            continue
        d = st.mean(v) - st.mean(by_cell[(enc, "baseline", "-")])
        above += d > 2 * noise
        below += d < -2 * noise
    total = sum(1 for c in by_cell if c[1] != "baseline")
    print(f"- Fusion cells more than 2 × noise ({2 * noise:.2f}) above their encoder's baseline: {above} of {total}; "
          f"below: {below}.")
    enc_means = {e: st.mean(st.mean(v) for (ee, f, l), v in by_cell.items() if ee == e) for e in encoders}
    print("- Encoders, mean Avg over all cells: " + ", ".join(f"{e} {m:.2f}" for e, m in enc_means.items()) + ".")


if __name__ == "__main__":
    main()
