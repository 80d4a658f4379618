#!/usr/bin/env python3
"""Overlays the curves of several byol-pretrain runs in one picture.

    python3 scripts/plot_runs.py RUN_FOLDER [RUN_FOLDER ...] [-o runs.png] [--x step|epoch]

Each run folder holds the metrics.csv that byol-pretrain rewrites at every checkpoint and at the end (one
row per logged step or kNN evaluation). The picture has four panels sharing the x axis: BYOL loss, kNN
top-1 accuracy (where the runs evaluated it), online-probe top-1 accuracy, and the learning rate; one
colour per run, named after its folder. Needs matplotlib (Debian: python3-matplotlib, which
scripts/setup.sh installs); writes PNG, SVG or PDF by the output's extension.
"""
import argparse
import csv
import os
import sys


def read_run(folder):
    path = os.path.join(folder, "metrics.csv")
    if not os.path.isfile(path):
        sys.exit(f"plot_runs: {path} does not exist (byol-pretrain writes it at the first checkpoint)")
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
    if not rows:
        sys.exit(f"plot_runs: {path} has no rows")
    return rows


def series(rows, x_key, y_key):
    pts = [(r[x_key], r[y_key]) for r in rows if x_key in r and y_key in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="byol-pretrain run folders (run.out)")
    ap.add_argument("-o", "--output", default="runs.png")
    ap.add_argument("--x", choices=["step", "epoch"], default="step")
    args = ap.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("loss", "BYOL loss"), ("knn_top1", "kNN top-1 accuracy"), ("probe_top1", "online probe top-1"),
              ("lr", "learning rate")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.6 * len(panels)), sharex=True)
    for folder in args.runs:
        rows = read_run(folder)
        # kNN rows carry only the step: give them the epoch of the nearest logged step for --x epoch
        if args.x == "epoch":
            per_step = {r["step"]: r["epoch"] for r in rows if "epoch" in r}
            for r in rows:
                if "epoch" not in r and per_step:
                    r["epoch"] = per_step[min(per_step, key=lambda s: abs(s - r["step"]))]
        name = os.path.basename(os.path.normpath(folder))
        for ax, (key, _) in zip(axes, panels):
            xs, ys = series(rows, args.x, key)
            if xs:
                ax.plot(xs, ys, marker="o" if key == "knn_top1" else None, markersize=3, label=name)
    for ax, (key, title) in zip(axes, panels):
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[-1].set_xlabel(args.x)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"plot_runs: {len(args.runs)} run(s) -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
