#!/usr/bin/env bash
# The CPU BYOL step, byol.cpp next to PyTorch, same thread count, one run:
#   benchmarks/run_step_bench.sh [build-dir=build] [batch=64] [steps=3] [threads=2]
set -euo pipefail
build=${1:-build}
batch=${2:-64}
steps=${3:-3}
threads=${4:-2}
here=$(cd "$(dirname "$0")" && pwd)
ours=$(OMP_NUM_THREADS=$threads "$build/benchmarks/byol_step_bench" "$batch" "$steps")
echo "$ours"
if /usr/bin/python3 -c "import torch, torchvision" 2>/dev/null; then
  theirs=$(OMP_NUM_THREADS=$threads /usr/bin/python3 "$here/reference/byol_step_torch.py" "$batch" "$steps" "$threads")
  echo "$theirs"
  a=$(echo "$ours" | sed -E 's/.* ([0-9.]+) images\/s.*/\1/')
  b=$(echo "$theirs" | sed -E 's/.* ([0-9.]+) images\/s.*/\1/')
  echo "ratio byol.cpp / PyTorch: $(echo "scale=2; $a / $b" | bc)"
else
  echo "PyTorch reference skipped: /usr/bin/python3 cannot import torch and torchvision (apt-get install python3-torchvision)"
fi
