#!/usr/bin/env bash
# byol-pretrain's collapse monitor (issue 16): without predictor and target network (the paper's ablation)
# BYOL collapses within a short run and the warning says so, on stderr and in metrics.jsonl; plain BYOL on
# the same data does not trip it and keeps its normalised projections spread.
#   pretrain_collapse.sh BYOL_PRETRAIN WORK_DIR
set -uo pipefail
bin=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
common=(--set run.device=cpu --set data.train=synthetic:512:4:16:1 --set data.side=16 --set data.normalization=none
        --set data.workers=1 --set model.base_channels=8 --set model.stem=cifar --set model.projector_hidden=64
        --set model.projection_dim=32 --set model.predictor_hidden=64 --set train.epochs=8 --set train.warmup_epochs=1
        --set train.batch_size=64 --set run.log_every=4)
"$bin" "${common[@]}" --set train.predictor=false --set train.target_network=false --set run.out="$work/ablation" \
  > "$work/ablation.log" 2>&1 || { tail -3 "$work/ablation.log"; echo "FAIL: byol-pretrain (ablation)"; exit 1; }
grep -q "warning: the representation is collapsing: since step" "$work/ablation.log" ||
  { grep "train_projection_std" "$work/ablation/metrics.jsonl" | tail -3; echo "FAIL: no collapse warning without predictor and target"; exit 1; }
grep -q '"collapse_warning":{' "$work/ablation/metrics.jsonl" || { echo "FAIL: the warning is not in metrics.jsonl"; exit 1; }
"$bin" "${common[@]}" --set run.out="$work/byol" > "$work/byol.log" 2>&1 || { tail -3 "$work/byol.log"; echo "FAIL: byol-pretrain"; exit 1; }
if grep -q "collapsing" "$work/byol.log"; then grep collapsing "$work/byol.log"; echo "FAIL: plain BYOL tripped the collapse warning"; exit 1; fi
# The last log point: BYOL's spread above half of 1/sqrt(32), the ablation's below a third of it.
last() { grep '"train_projection_std"' "$1" | tail -1 | sed -E 's/.*"train_projection_std":([0-9.e+-]+).*/\1/'; }
b=$(last "$work/byol/metrics.jsonl")
a=$(last "$work/ablation/metrics.jsonl")
awk -v b="$b" -v a="$a" 'BEGIN { h = 1 / sqrt(32); exit !(b > 0.5 * h && a < h / 3) }' ||
  { echo "FAIL: final projection std: BYOL $b, ablation $a (healthy about 0.177)"; exit 1; }
echo "PASS: the ablation collapses (projection std $a, warned), BYOL does not ($b; healthy about 0.177)"
