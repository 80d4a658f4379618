#!/usr/bin/env python3
"""The training-quality regression check (ctest: e2e_training_vs_pytorch): byol.cpp must learn as much from BYOL
as the PyTorch reference (tests/reference/byol_train.py, written from the paper and the official code) does
with the same recipe.

--recipe fashion-mnist (the default, ctest's): the README's main job (configs/fashion_mnist.toml) cut to 3 epochs: Fashion-MNIST, the
quarter-width ResNet-18 with the ImageNet stem, 28 px views, byol.cpp's initialisers on both sides (with
PyTorch's default initialisers the random network is already a 74 % kNN classifier that 3 epochs of BYOL
do not beat, on either side). Both sides are scored the same way: kNN top-1 (k = 200, T = 0.1, cosine, BN in
evaluation mode) on all 60,000 / 10,000 images, at random initialisation and after training; the gain is the
difference. (byol-pretrain's monitor and byol_train.py's evaluator agree: 75.04 % for the same encoder.)

--recipe cifar10-short: configs/cifar10_short.toml, the 1000-step CIFAR-10 benchmark of issue 12 (a
documented benchmark command, not run by ctest: about 45 minutes per seed and side at one thread).

    training_check.py [--recipe R] check BYOL_PRETRAIN WORK_DIR [--margin M] [--seeds S ...]
        byol-pretrain trains the recipe at seeds 0 and 1 (2 threads); passes when its mean kNN accuracy
        after training is at least the reference's mean minus M points (with the same initialisers on both
        sides, the random networks' accuracies have one distribution, so this compares the gains; it is
        the less noisy statistic: see below). The reference is tests/reference/training_reference.json; a
        reference measured for another recipe (the config or EPOCHS changed) fails, saying so.
    training_check.py [--recipe R] measure-reference SEED [SEED ...] [--jobs J] [--threads T] [--add]
                      [--device cuda]
        runs byol_train.py on the recipe once per seed (J runs at a time, T threads each) and writes
        training_reference.json (about 15 minutes per two seeds on two cores; not run by ctest); with
        --add, the stored runs of other seeds are kept.
    training_check.py [--recipe R] measure-byolcpp BYOL_PRETRAIN WORK_DIR SEED [SEED ...] [--device cuda]
                      [--workers W]
        byol-pretrain's results at several seeds, for the spread (docs/results.md).
    --device cuda trains both sides on a GPU (TF32 allowed on both; the views are still made on the CPU):
    minutes per run instead of most of an hour (scripts/gpu_check.sh's train step).

The statistic and the margin (measured over four seeds per side, docs/results.md): a random network's own
kNN accuracy varies by several points with the seed, so one run's gain varies more (sd 2-4 points) than its
final accuracy (sd about 2). The check's seeds are fixed, so its two random networks are too (68.48 and
72.44 %, mean 70.46): a trainer that learns nothing (the failure this guards against: in 2026-11 byol.cpp
gained +0.0-0.8 points where PyTorch gained +3-5 on CIFAR) ends near 70.5 % against a bar of about 72.6 % and
fails, as does one that learns a third as much. A trainer as good as the reference, drawn anew whenever a
change moves the rounding, falls below the bar a few times in a hundred (two-seed sd about 1.6 points).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_MARGIN = 3.0


class Recipe:
    """One recipe both sides train: a byol-pretrain config (cut to `epochs` when given) and its data."""

    def __init__(self, name, config, epochs, train_images, torch_data, reference, data_check):
        self.name, self.config, self.epochs, self.train_images = name, config, epochs, train_images
        self.torch_data, self.reference, self.data_check = torch_data, reference, data_check


RECIPES = {
    # ctest's check: the README's main job cut to 3 epochs (1,404 steps).
    "fashion-mnist": Recipe("fashion-mnist", os.path.join(ROOT, "configs", "fashion_mnist.toml"), 3, 60000,
                            "fashion-mnist", os.path.join(HERE, "training_reference.json"),
                            ("/usr/share/datasets/fashion-mnist",
                             "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist, or "
                             "scripts/setup.sh)")),
    # The issue-12 benchmark: CIFAR-10, 1000 steps, the config's own length (about 45 min per side and seed).
    "cifar10-short": Recipe("cifar10-short", os.path.join(ROOT, "configs", "cifar10_short.toml"), None, 50000,
                            os.path.join(ROOT, "data-local", "cifar10"),
                            os.path.join(HERE, "training_reference_cifar10_short.json"),
                            (os.path.join(ROOT, "data-local", "cifar10", "train"),
                             "CIFAR-10's JPEG folders are not unpacked (tar xzf ../shared/data/cifar10.tar.gz "
                             "-C data-local)")),
}
R = RECIPES["fashion-mnist"]  # set by --recipe


def recipe(device="cpu"):
    """The recipe from its config, as byol-pretrain --set overrides (training on `device`) and byol_train.py
    arguments."""
    with open(R.config, "rb") as f:
        c = tomllib.load(f)
    d, m, a, t = c["data"], c["model"], c.get("augment", {}), c["train"]
    if m["depth"] != 18 or m.get("width", 1) != 1:
        sys.exit(f"{R.config}: the reference (byol_train.py) trains a ResNet-18 at width 1")
    per_epoch = R.train_images // t["batch_size"]
    epochs = R.epochs if R.epochs is not None else t["epochs"]
    steps = int(epochs * per_epoch)
    warmup = min(steps, int(t["warmup_epochs"] * per_epoch))
    # byol-pretrain's defaults where the config is silent (apps/pretrain_config.h).
    jitter = a.get("jitter", "torchvision")
    target_init = t.get("target_init", "copy")
    torch_args = ["--data", os.path.relpath(R.torch_data, ROOT) if os.path.isabs(R.torch_data) else R.torch_data,
                  "--side", str(d["side"]), "--normalization", d["normalization"],
                  "--stem", m["stem"], "--base", str(m["base_channels"]),
                  "--hidden", str(m["projector_hidden"]), "--dim", str(m["projection_dim"]),
                  "--batch", str(t["batch_size"]), "--steps", str(steps),
                  "--warmup-fraction", repr(warmup / steps), "--base-lr", repr(float(t["base_lr"])),
                  "--weight-decay", repr(float(t["weight_decay"])), "--tau-base", repr(float(t["tau_base"])),
                  "--jitter", jitter, "--target-init", target_init, "--init", "byolcpp",
                  "--crop-min", repr(float(a.get("crop_area_min", 0.08))),
                  "--jitter-strength", repr(float(a.get("jitter_strength", 1.0)))]
    if m["projector_hidden"] != m["predictor_hidden"]:
        sys.exit(f"{R.config}: byol_train.py uses one hidden width for the projector and the predictor")
    pretrain_sets = [f"train.epochs={epochs}", "run.knn_every=0", "run.checkpoint_every=100000",
                     "data.knn_train_images=0", "data.knn_test_images=0", f"run.device={device}"]
    # Relative dataset paths in the config are relative to the project root, wherever this runs from.
    for key in ("train", "knn_train", "knn_test"):
        kind, _, path = d[key].partition(":")
        if kind == "folder" and not os.path.isabs(path):
            pretrain_sets.append(f"data.{key}={kind}:{os.path.join(ROOT, path)}")
    return torch_args, pretrain_sets, steps


def torch_python():
    return os.environ.get("BYOL_TORCH_PYTHON", "/usr/bin/python3")


def run_byolcpp(binary, work, seed, threads, device="cpu", workers=0):
    """One byol-pretrain run of the recipe on `device` (workers > 0: that many loader workers instead of the
    config's); returns (kNN at step 0, kNN at the end, steps, seconds)."""
    _, sets, steps = recipe(device)
    if workers > 0:
        sets = sets + [f"data.workers={workers}"]
    out = os.path.join(work, f"seed{seed}")
    subprocess.run(["rm", "-rf", out], check=True)
    cmd = [binary, "--config", R.config, "--set", f"run.out={out}", "--set", f"train.seed={seed}",
           "--set", f"train.threads={threads}"]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.time()
    subprocess.run(cmd, check=True)
    seconds = time.time() - t0
    knn = []
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            j = json.loads(line)
            if "knn_top1" in j:
                knn.append((j["step"], 100.0 * j["knn_top1"]))
    if len(knn) < 2 or knn[0][0] != 0 or knn[-1][0] != steps:
        sys.exit(f"{out}/metrics.jsonl: expected kNN results at step 0 and step {steps}, got {knn}")
    return knn[0][1], knn[-1][1], steps, seconds


def measure_reference(args):
    """byol_train.py once per seed, --jobs runs at a time with --threads threads each."""
    torch_args, _, steps = recipe()
    os.makedirs(args.work, exist_ok=True)
    runs = []
    if args.add:  # keep the stored runs of the same recipe, add these seeds
        runs = [r for r in load_reference()["runs"] if r["seed"] not in args.seeds]
    pending = list(args.seeds)
    while pending:
        batch, pending = pending[:args.jobs], pending[args.jobs:]
        procs = []
        for seed in batch:
            path = os.path.join(args.work, f"reference_seed{seed}.json")
            log = open(os.path.join(args.work, f"reference_seed{seed}.log"), "w")
            cmd = [torch_python(), os.path.join(HERE, "byol_train.py"), *torch_args, "--seed", str(seed),
                   "--threads", str(args.threads), "--monitor-every", "200", "--json", path,
                   "--device", args.device]
            procs.append((seed, path, time.time(),
                          subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)))
        for seed, path, t0, p in procs:
            if p.wait() != 0:
                sys.exit(f"byol_train.py failed for seed {seed}: see {args.work}/reference_seed{seed}.log")
            with open(path) as f:
                r = json.load(f)
            runs.append({"seed": seed, "knn_init": r["knn_init"], "knn_final": r["knn_final"],
                         "gain": r["knn_final"] - r["knn_init"], "seconds": round(time.time() - t0),
                         "device": args.device})
            print(f"reference seed {seed}: {r['knn_init']:.2f} -> {r['knn_final']:.2f} % "
                  f"({runs[-1]['gain']:+.2f})", flush=True)
    runs.sort(key=lambda r: r["seed"])
    gains = [r["gain"] for r in runs]
    ref = {"what": f"kNN gain of tests/reference/byol_train.py on the recipe {R.name} (training_check.py)",
           "date": time.strftime("%Y-%m-%d"), "byol_train_args": torch_args, "steps": steps, "runs": runs,
           "mean_gain": statistics.mean(gains),
           "stdev_gain": statistics.stdev(gains) if len(gains) > 1 else None}
    with open(R.reference + ".tmp", "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    os.replace(R.reference + ".tmp", R.reference)
    print(f"{R.reference}: mean gain {ref['mean_gain']:+.2f} over seeds {[r['seed'] for r in runs]}")


def load_reference():
    torch_args, _, _ = recipe()
    try:
        with open(R.reference) as f:
            ref = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"FAIL: cannot read the PyTorch reference {R.reference}: {e}")
    if ref.get("byol_train_args") != torch_args:
        sys.exit(f"FAIL: {R.reference} was measured for another recipe ({R.config} or its length "
                 f"changed):\n  stored  {ref.get('byol_train_args')}\n  current {torch_args}\n"
                 f"measure it again: {sys.argv[0]} --recipe {R.name} measure-reference 0 1 2 3")
    return ref


def check(args):
    ref = load_reference()
    gains, finals, lines = [], [], []
    for seed in args.seeds:
        init, final, steps, seconds = run_byolcpp(args.binary, args.work, seed, 2)
        gains.append(final - init)
        finals.append(final)
        lines.append(f"  byol.cpp (byol-pretrain, seed {seed}, {seconds:.0f} s): {init:.2f} -> {final:.2f} % "
                     f"({gains[-1]:+.2f})")
    gain, final = statistics.mean(gains), statistics.mean(finals)
    ref_final = statistics.mean(r["knn_final"] for r in ref["runs"])
    need = ref_final - args.margin
    seeds = ", ".join(f"{r['knn_init']:.2f} -> {r['knn_final']:.2f}" for r in ref["runs"])
    print(f"kNN top-1 after {steps} steps (all training / test images):\n"
          f"  PyTorch reference (byol_train.py, {ref['date']}; seeds {seeds}): mean {ref_final:.2f} %, "
          f"mean gain {ref['mean_gain']:+.2f}\n" + "\n".join(lines) + "\n"
          f"  byol.cpp: mean {final:.2f} %, mean gain {gain:+.2f}\n"
          f"  required: a mean of at least {need:.2f} % (the reference's mean minus {args.margin} points)")
    if final < need:
        print("FAIL: byol.cpp learns less than the PyTorch reference")
        return 1
    print("PASS")
    return 0


def measure_byolcpp(args):
    gains = []
    for seed in args.seeds:
        init, final, steps, seconds = run_byolcpp(args.binary, args.work, seed, args.threads, args.device,
                                                  args.workers)
        gains.append(final - init)
        print(f"byol.cpp seed {seed}: {init:.2f} -> {final:.2f} % ({gains[-1]:+.2f}) in {seconds:.0f} s", flush=True)
        with open(os.path.join(args.work, "byolcpp_runs.jsonl"), "a") as f:
            f.write(json.dumps({"recipe": R.name, "seed": seed, "threads": args.threads, "device": args.device,
                                "knn_init": init,
                                "knn_final": final, "gain": final - init, "seconds": round(seconds)}) + "\n")
    print(f"byol.cpp mean gain {statistics.mean(gains):+.2f}"
          + (f", stdev {statistics.stdev(gains):.2f}" if len(gains) > 1 else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="fashion-mnist")
    sub = ap.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("check")
    c.add_argument("binary")
    c.add_argument("work")
    c.add_argument("--margin", type=float, default=DEFAULT_MARGIN)
    c.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    r = sub.add_parser("measure-reference")
    r.add_argument("seeds", type=int, nargs="+")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--jobs", type=int, default=2, help="runs at a time")
    r.add_argument("--add", action="store_true", help="keep the stored reference's other seeds")
    r.add_argument("--work", default=os.path.join(ROOT, "runs", "training_reference"))
    r.add_argument("--device", default="cpu", help="byol_train.py --device (cpu or cuda)")
    b = sub.add_parser("measure-byolcpp")
    b.add_argument("binary")
    b.add_argument("work")
    b.add_argument("seeds", type=int, nargs="+")
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--device", default="cpu", help="byol-pretrain's run.device (cpu, cuda, auto)")
    b.add_argument("--workers", type=int, default=0, help="loader workers (0: the config's)")
    args = ap.parse_args()
    global R
    R = RECIPES[args.recipe]
    if not os.path.isdir(R.data_check[0]):
        print(f"SKIPPED: {R.data_check[1]}")
        return 77
    if args.mode == "check":
        return check(args)
    if args.mode == "measure-reference":
        return measure_reference(args)
    return measure_byolcpp(args)


if __name__ == "__main__":
    sys.exit(main() or 0)
