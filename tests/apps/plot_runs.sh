#!/usr/bin/env bash
# scripts/plot_runs.py on two short byol-pretrain runs: their metrics.csv files overlaid in one PNG.
#   plot_runs.sh BYOL_PRETRAIN WORK_DIR [PYTHON]
set -uo pipefail
bin=$1
work=$2
python=${3:-/usr/bin/python3}
root="$(cd "$(dirname "$0")/../.." && pwd)"
rm -rf "$work"
mkdir -p "$work"
if ! "$python" -c 'import matplotlib' 2> /dev/null; then
  echo "SKIPPED: $python has no matplotlib (scripts/setup.sh installs python3-matplotlib)"
  exit 77
fi
for seed in 0 1; do
  "$bin" --set data.train=synthetic:256:4:16:1 --set data.side=16 --set data.normalization=none --set data.workers=1 \
    --set model.base_channels=4 --set model.stem=cifar --set model.projector_hidden=16 --set model.projection_dim=8 \
    --set model.predictor_hidden=16 --set train.epochs=2 --set train.warmup_epochs=0 --set train.batch_size=64 \
    --set train.seed=$seed --set run.device=cpu --set run.log_every=1 --set run.out="$work/seed$seed" > "$work/seed$seed.log" 2>&1 ||
    { tail -3 "$work/seed$seed.log"; echo "FAIL: byol-pretrain seed $seed"; exit 1; }
done
"$python" "$root/scripts/plot_runs.py" "$work/seed0" "$work/seed1" -o "$work/runs.png" --x epoch || { echo "FAIL: plot_runs.py"; exit 1; }
size=$(stat -c %s "$work/runs.png" 2> /dev/null || echo 0)
head -c 8 "$work/runs.png" | od -An -c | grep -q 'P   N   G' && [ "$size" -gt 10000 ] ||
  { echo "FAIL: $work/runs.png is not a PNG of some size ($size bytes)"; exit 1; }
"$python" "$root/scripts/plot_runs.py" "$work/no_such_run" -o "$work/x.png" > "$work/missing.txt" 2>&1 &&
  { echo "FAIL: a missing run folder was accepted"; exit 1; }
grep -q "no_such_run/metrics.csv does not exist" "$work/missing.txt" || { cat "$work/missing.txt"; echo "FAIL: unclear error"; exit 1; }
echo "PASS: two runs overlaid in $work/runs.png ($size bytes); a missing run is named"
