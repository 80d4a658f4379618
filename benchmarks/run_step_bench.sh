#!/usr/bin/env bash
# The CPU BYOL step, byol.cpp next to PyTorch, same thread count, one run:
#   benchmarks/run_step_bench.sh [build-dir=build] [batch=64] [steps=3] [threads=2]
# fp32: PyTorch runs in its default NCHW memory format and in channels_last (NHWC, byol.cpp's layout); the
# ratio is taken against the faster of the two. bf16: byol.cpp's --precision bf16 (the convolutions'
# products in bf16) next to PyTorch's torch.autocast("cpu", bfloat16) with channels_last. The runs
# alternate (ours, theirs, ours again) and each keeps its best, so a burst of load from elsewhere does not
# decide the comparison.
set -euo pipefail
build=${1:-build}
batch=${2:-64}
steps=${3:-3}
threads=${4:-2}
here=$(cd "$(dirname "$0")" && pwd)
rate() { sed -E 's/.* ([0-9.]+) images\/s.*/\1/'; }
best() { printf '%s\n' "$@" | sort -g | tail -1; }
ours() { OMP_NUM_THREADS=$threads "$build/benchmarks/byol_step_bench" "$batch" "$steps" --precision "$1"; }
if ! /usr/bin/python3 -c "import torch, torchvision" 2>/dev/null; then
  ours fp32
  ours bf16
  echo "PyTorch reference skipped: /usr/bin/python3 cannot import torch and torchvision (apt-get install python3-torchvision)"
  exit 0
fi
theirs() {
  OMP_NUM_THREADS=$threads /usr/bin/python3 "$here/reference/byol_step_torch.py" "$batch" "$steps" "$threads" --format "$@"
}
o1=$(ours fp32); echo "$o1"
h1=$(ours bf16); echo "$h1"
t1=$(theirs nchw); echo "$t1"
t2=$(theirs nhwc); echo "$t2"
t3=$(theirs nhwc --amp bf16); echo "$t3"
o2=$(ours fp32); echo "$o2"
h2=$(ours bf16); echo "$h2"
a=$(best "$(echo "$o1" | rate)" "$(echo "$o2" | rate)")
b=$(best "$(echo "$t1" | rate)" "$(echo "$t2" | rate)")
c=$(best "$(echo "$h1" | rate)" "$(echo "$h2" | rate)")
d=$(echo "$t3" | rate)
echo "best fp32: byol.cpp $a images/s, PyTorch $b images/s; ratio byol.cpp / PyTorch: $(echo "scale=2; $a / $b" | bc)"
echo "best bf16: byol.cpp $c images/s ($(echo "scale=2; $c / $a" | bc)x its fp32), PyTorch AMP $d images/s; ratio: $(echo "scale=2; $c / $d" | bc)"
