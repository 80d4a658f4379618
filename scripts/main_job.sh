#!/usr/bin/env bash
# The README's main job: BYOL pretraining on Fashion-MNIST (configs/fashion_mnist.toml), then the
# learned encoder evaluated by kNN and linear evaluation next to a randomly initialised one.
#   scripts/main_job.sh [build-dir=build]
# An interrupted run is resumed when the job is started again; a finished one is only re-evaluated
# (delete runs/fashion_mnist to pretrain again). Everything lands in runs/fashion_mnist/.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out=runs/fashion_mnist
config=configs/fashion_mnist.toml
for b in byol-pretrain byol-eval; do
  [ -x "$build/apps/$b" ] || { echo "error: $build/apps/$b not found; build first (see README.md)" >&2; exit 1; }
done
[ -d /usr/share/datasets/fashion-mnist ] || { echo "error: Fashion-MNIST is missing: run scripts/setup.sh (Debian's dataset-fashion-mnist)" >&2; exit 1; }

if [ -f "$out/encoder.safetensors" ]; then
  echo "== $out already holds a finished run; evaluating it again (delete $out to pretrain again)"
else
  echo "== BYOL pretraining on Fashion-MNIST ($config; an interrupted run in $out continues)"
  "$build/apps/byol-pretrain" --config "$config" --auto-resume
fi

# The encoder's shape, for the random-init baseline: the same network as the config's.
shape=(--depth 18 --stem imagenet --base-channels 16)
data=(--train fashion-mnist:train --test fashion-mnist:test --side 28 --normalization fashion-mnist --center-fraction 1)
echo "== evaluation (kNN k=200 and linear evaluation; 60,000 train / 10,000 test images)"
"$build/apps/byol-eval" knn --encoder "$out/encoder.safetensors" "${data[@]}" --json "$out/knn_byol.json"
"$build/apps/byol-eval" knn --random-init "${shape[@]}" "${data[@]}" --json "$out/knn_random.json"
"$build/apps/byol-eval" linear --encoder "$out/encoder.safetensors" "${data[@]}" --epochs 30 --json "$out/linear_byol.json"
"$build/apps/byol-eval" linear --random-init "${shape[@]}" "${data[@]}" --epochs 30 --json "$out/linear_random.json"

top1() { sed -n 's/^  "top1": *\([0-9.eE+-]*\).*/\1/p' "$1" | head -1; }
pct() { awk -v x="$1" 'BEGIN { printf "%6.2f %%", 100 * x }'; }
echo
echo "Fashion-MNIST test accuracy (top-1)      BYOL      random init"
echo "  kNN (k = 200, cosine, T = 0.1)       $(pct "$(top1 "$out/knn_byol.json")")    $(pct "$(top1 "$out/knn_random.json")")"
echo "  linear evaluation                    $(pct "$(top1 "$out/linear_byol.json")")    $(pct "$(top1 "$out/linear_random.json")")"
echo "(curves: $out/curves.svg, metrics: $out/metrics.jsonl, encoder: $out/encoder.safetensors)"
