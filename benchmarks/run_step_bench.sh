#!/usr/bin/env bash
# The CPU BYOL step, byol.cpp next to PyTorch, same thread count, one run:
#   benchmarks/run_step_bench.sh [build-dir=build] [batch=64] [steps=3] [threads=2]
# PyTorch runs twice, in its default NCHW memory format and in channels_last (NHWC, byol.cpp's layout);
# the ratio is taken against the faster of the two. The runs alternate (ours, NCHW, NHWC, ours again)
# and each side keeps its best, so a burst of load from elsewhere does not decide the comparison.
set -euo pipefail
build=${1:-build}
batch=${2:-64}
steps=${3:-3}
threads=${4:-2}
here=$(cd "$(dirname "$0")" && pwd)
rate() { sed -E 's/.* ([0-9.]+) images\/s.*/\1/'; }
best() { printf '%s\n' "$@" | sort -g | tail -1; }
ours() { OMP_NUM_THREADS=$threads "$build/benchmarks/byol_step_bench" "$batch" "$steps"; }
if ! /usr/bin/python3 -c "import torch, torchvision" 2>/dev/null; then
  ours
  echo "PyTorch reference skipped: /usr/bin/python3 cannot import torch and torchvision (apt-get install python3-torchvision)"
  exit 0
fi
theirs() {
  OMP_NUM_THREADS=$threads /usr/bin/python3 "$here/reference/byol_step_torch.py" "$batch" "$steps" "$threads" --format "$1"
}
o1=$(ours); echo "$o1"
t1=$(theirs nchw); echo "$t1"
t2=$(theirs nhwc); echo "$t2"
o2=$(ours); echo "$o2"
a=$(best "$(echo "$o1" | rate)" "$(echo "$o2" | rate)")
b=$(best "$(echo "$t1" | rate)" "$(echo "$t2" | rate)")
echo "best: byol.cpp $a images/s, PyTorch $b images/s; ratio byol.cpp / PyTorch: $(echo "scale=2; $a / $b" | bc)"
