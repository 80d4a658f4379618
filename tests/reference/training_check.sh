#!/usr/bin/env bash
# The training-quality regression check (ctest: training_vs_pytorch): byol.cpp must learn from BYOL as much
# as the PyTorch reference does on the same data. A short run on Fashion-MNIST (Debian's package):
#   1. byol.cpp's loader records one stream of view pairs (BYOL's augmentations at 28 px, with the main
#      job's softer crops and jitter for small grey images);
#   2. byol.cpp's Learner and the PyTorch reference (tests/reference/byol_train.py, written from the paper
#      and the official code) each train a small ResNet-18 (CIFAR stem) on that same stream;
#   3. one evaluator (byol_train.py's kNN, k = 200, T = 0.1, BN in evaluation mode, 5,000 / 1,000 images)
#      scores both encoders and byol.cpp's random-init encoder.
# Passes when byol.cpp's kNN gain over its random init is at least the reference's gain minus MARGIN points.
# MARGIN covers the run-to-run spread of short runs (docs/results.md has the measured spread); a trainer that
# learns nothing (the failure this guards against) gains nothing and fails by far more.
#   training_check.sh BYOL_VIEWS WORK_DIR [STEPS=300] [MARGIN=2.5]
# Skipped (exit 77), saying why, where Fashion-MNIST or PyTorch is missing (scripts/setup.sh installs both).
set -euo pipefail
bin=$1
work=$2
steps=${3:-300}
margin=${4:-2.5}
py=${BYOL_TORCH_PYTHON:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  echo "SKIPPED: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist, or scripts/setup.sh)"
  exit 77
fi
if ! "$py" -c "import torch, torchvision" 2>/dev/null; then
  echo "SKIPPED: $py cannot import torch and torchvision (apt-get install python3-torchvision, or scripts/setup.sh)"
  exit 77
fi
rm -rf "$work"
mkdir -p "$work"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
shape=(8 256 64)  # base channels, projector/predictor hidden, projection dim
# The main job's softer augmentation for 28x28 grey images (crops of >= 30 % of the area, half-strength jitter).
"$bin" record fashion-mnist:train "$work/views.safetensors" "$steps" 128 28 0 official 0.3 0.5
"$bin" train "$work/views.safetensors" "$work/init.safetensors" 0 0 copy "${shape[@]}"
"$bin" train "$work/views.safetensors" "$work/byolcpp.safetensors" "$steps" 0 copy "${shape[@]}"
common=(--data fashion-mnist --side 28 --batch 128 --base 8 --hidden 256 --dim 64 --steps "$steps"
        --knn-train 5000 --knn-test 1000 --threads "$OMP_NUM_THREADS")
"$py" "$here/byol_train.py" "${common[@]}" --views "$work/views.safetensors" --init byolcpp --target-init copy \
  --monitor-every 100 --json "$work/reference.json"
"$py" "$here/byol_train.py" "${common[@]}" --eval-encoder "$work/byolcpp.safetensors" \
  --eval-baseline "$work/init.safetensors" --json "$work/byolcpp.json"
"$py" - "$work/reference.json" "$work/byolcpp.json" "$margin" <<'EOF'
import json, sys
ref, ours, margin = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), float(sys.argv[3])
g_ref = ref["knn_final"] - ref["knn_init"]
g_ours = ours["knn"] - ours["knn_init"]
print(f"kNN gain over random init after the same steps on the same views: PyTorch reference "
      f"{ref['knn_init']:.2f} -> {ref['knn_final']:.2f} % ({g_ref:+.2f}), byol.cpp {ours['knn_init']:.2f} -> "
      f"{ours['knn']:.2f} % ({g_ours:+.2f}); required: byol.cpp >= reference - {margin}")
if g_ours < g_ref - margin:
    print("FAIL: byol.cpp learns less than the PyTorch reference")
    sys.exit(1)
print("PASS")
EOF
