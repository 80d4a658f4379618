#!/usr/bin/env bash
# The learning-quality comparison of issue 12 on one GPU: the cifar10-short recipe (configs/cifar10_short.toml,
# 1000 steps of batch 128, ResNet-18 CIFAR stem at base width 16) trained by byol-pretrain and by the PyTorch
# reference (tests/reference/byol_train.py) on the same GPU, every seed and both sides at once, each run
# scored by its kNN gain (all 50,000 / 10,000 images) through tests/reference/training_check.py.
#
#   scripts/gpu_learning_check.sh BYOL_PRETRAIN OUT_DIR [SEED ...]      (default seeds: 0 1)
#
# CIFAR-10: data-local/cifar10 when unpacked, else unpacked there from $CIFAR10_TAR (default
# .carry/cifar10.tar.gz, a copy of ../shared/data/cifar10.tar.gz carried to the GPU machine).
# Python: $BYOL_TORCH_PYTHON, else the python3 on PATH (the GPU machine's, with PyTorch and CUDA).
# Every run stops at GPU_LEARN_S seconds (default 400). Runs go to GPU_LEARN_WORK (default
# runs/gpu_learning/). Results, written as they come (a call cut short keeps the seeds that finished):
# OUT_DIR/byolcpp_seed<S>.log and OUT_DIR/reference.log (each run's kNN at random initialisation and after
# training), then OUT_DIR/learning.tgz (the per-run JSON and byol-pretrain's metrics.jsonl), and on stdout
# one line per run and the mean gain of each side. Views are made on the CPU on both sides; TF32 is
# allowed on both. scripts/gpu_check.sh runs this as its learn step.
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
if [ $# -lt 2 ]; then
  sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 2
fi
bin=$1
out=$2
shift 2
seeds=("$@")
[ ${#seeds[@]} -eq 0 ] && seeds=(0 1)
limit="${GPU_LEARN_S:-400}"
[ -x "$bin" ] || { echo "gpu_learning_check: $bin is not an executable (build byol-pretrain first)" >&2; exit 2; }
mkdir -p "$out" || exit 2
out="$(cd "$out" && pwd)"
export BYOL_TORCH_PYTHON="${BYOL_TORCH_PYTHON:-$(command -v python3)}"
export PYTHONUNBUFFERED=1

if [ ! -d "$root/data-local/cifar10/train" ]; then
  tar_file="${CIFAR10_TAR:-$root/.carry/cifar10.tar.gz}"
  [ -f "$tar_file" ] || { echo "gpu_learning_check: no data-local/cifar10 and no $tar_file" >&2; exit 2; }
  mkdir -p "$root/data-local" && tar xzf "$tar_file" -C "$root/data-local" ||
    { echo "gpu_learning_check: cannot unpack $tar_file" >&2; exit 2; }
fi

work="${GPU_LEARN_WORK:-$root/runs/gpu_learning}"
rm -rf "$work"
mkdir -p "$work"
check="$root/tests/reference/training_check.py"
pids=()
# Stopped from outside (gpu_check's timeout or signal): stop the training runs too, or they would go on
# holding the GPU after this script is gone (each inner timeout runs in its own process group).
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait; exit 143' TERM INT
for s in "${seeds[@]}"; do
  timeout --kill-after=10 "$limit" "$BYOL_TORCH_PYTHON" "$check" --recipe cifar10-short measure-byolcpp "$bin" \
    "$work/byolcpp_seed$s" "$s" --device cuda --workers 4 --threads 2 >"$out/byolcpp_seed$s.log" 2>&1 &
  pids+=($!)
done
timeout --kill-after=10 "$limit" "$BYOL_TORCH_PYTHON" "$check" --recipe cifar10-short measure-reference \
  "${seeds[@]}" --jobs "${#seeds[@]}" --threads 2 --device cuda --work "$work/reference" >"$out/reference.log" 2>&1 &
pids+=($!)
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
cp "$root/tests/reference/training_reference_cifar10_short.json" "$work/reference/" 2>/dev/null
(cd "$work" && find . \( -name '*.json' -o -name '*.jsonl' -o -name '*.log' -o -name 'config.toml' \) \
   ! -path '*/checkpoints/*' -print0 | tar -czf "$out/learning.tgz" --null -T -)
grep -h '^byol.cpp seed\|^reference seed' "$out"/byolcpp_seed*.log "$out/reference.log"
# Each side's mean gain over the seeds that finished (byol-pretrain's jsonl, byol_train.py's JSON).
"$BYOL_TORCH_PYTHON" - "$work" "${seeds[@]}" <<'PY'
import glob, json, os, statistics, sys
work, seeds = sys.argv[1], [int(s) for s in sys.argv[2:]]
ours = [json.loads(l) for f in glob.glob(os.path.join(work, "byolcpp_seed*", "byolcpp_runs.jsonl")) for l in open(f)]
theirs = [json.load(open(f)) for f in glob.glob(os.path.join(work, "reference", "reference_seed*.json"))]
for name, gains in (("byol.cpp", [r["gain"] for r in ours]),
                    ("reference", [r["knn_final"] - r["knn_init"] for r in theirs if "knn_final" in r])):
    if gains:
        print(f"{name}: mean gain {statistics.mean(gains):+.2f} over {len(gains)} of {len(seeds)} seeds")
    else:
        print(f"{name}: no run finished")
PY
exit $status
