#!/usr/bin/env bash
# byol-pretrain's TensorBoard event files, read back with TensorBoard's own reader (EventAccumulator, which
# checks every record's CRC): every numeric scalar of metrics.jsonl is there under its tag, at its step, with
# its wall time, once, after a run stopped by run.max_steps and resumed too.
#   tensorboard_events.sh BYOL_PRETRAIN WORK_DIR [PYTHON]
set -uo pipefail
bin=$1
work=$2
python=${3:-python3}
rm -rf "$work"
mkdir -p "$work"
if ! "$python" -c 'import tensorboard.backend.event_processing.event_accumulator' 2> /dev/null; then
  echo "SKIPPED: $python has no tensorboard (scripts/setup_python.sh installs it)"
  exit 77
fi
common=(--set run.device=cpu --set data.train=synthetic:256:4:16:1 --set data.knn_train=synthetic:128:4:16:2
        --set data.knn_test=synthetic:64:4:16:3 --set data.side=16 --set data.normalization=none --set data.workers=1
        --set model.base_channels=4 --set model.stem=cifar --set model.projector_hidden=16 --set model.projection_dim=8
        --set model.predictor_hidden=16 --set train.epochs=3 --set train.warmup_epochs=0 --set train.batch_size=64
        --set run.log_every=1 --set run.knn_every=4 --set run.checkpoint_every=4 --set run.out="$work/run")
"$bin" "${common[@]}" --set run.max_steps=6 > "$work/first.log" 2>&1 ||
  { tail -3 "$work/first.log"; echo "FAIL: byol-pretrain (first part)"; exit 1; }
[ "$(ls "$work/run" | grep -c '^events.out.tfevents\.')" -eq 1 ] || { ls "$work/run"; echo "FAIL: expected one event file"; exit 1; }
"$bin" "${common[@]}" --resume > "$work/resume.log" 2>&1 || { tail -3 "$work/resume.log"; echo "FAIL: byol-pretrain --resume"; exit 1; }
grep -q "resumed from .* at step 6" "$work/resume.log" || { cat "$work/resume.log"; echo "FAIL: did not resume at step 6"; exit 1; }
"$python" - "$work/run" <<'PY'
import glob, json, os, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
run = sys.argv[1]
files = glob.glob(os.path.join(run, "events.out.tfevents.*"))
if len(files) != 1:
    sys.exit(f"FAIL: {len(files)} event files after the resume, expected 1 (the resume rewrites it): {files}")
tags = {"loss": "train/loss", "lr": "train/lr", "tau": "train/tau", "epoch": "train/epoch",
        "images_per_s": "train/images_per_s", "probe_loss": "probe/loss", "probe_top1": "probe/top1",
        "knn_top1": "knn/top1", "feature_rank": "collapse/feature_rank",
        "projection_rank": "collapse/projection_rank", "projection_std": "collapse/projection_std",
        "train_projection_std": "collapse/train_projection_std",
        "train_projection_rank": "collapse/train_projection_rank", "online_target_cos": "collapse/online_target_cos"}
expected = {}
for line in open(os.path.join(run, "metrics.jsonl")):
    j = json.loads(line)
    for k, v in j.items():
        if k in ("step", "time") or not isinstance(v, (int, float)):
            continue
        if k not in tags:
            sys.exit(f"FAIL: metrics.jsonl has a scalar '{k}' the test does not know: add its tag")
        expected.setdefault(tags[k], []).append((j["step"], float(v), j["time"]))
acc = EventAccumulator(run, size_guidance={"scalars": 0})
acc.Reload()
found = acc.Tags()["scalars"]
if sorted(found) != sorted(expected):
    sys.exit(f"FAIL: tags {sorted(found)}, expected {sorted(expected)}")
for tag, want in expected.items():
    got = [(e.step, e.value, e.wall_time) for e in acc.Scalars(tag)]
    if [g[0] for g in got] != [w[0] for w in want]:
        sys.exit(f"FAIL: {tag}: steps {[g[0] for g in got]}, metrics.jsonl has {[w[0] for w in want]}")
    for (s, v, t), (_, wv, wt) in zip(got, want):
        if abs(v - wv) > 1e-6 * max(1.0, abs(wv)) or abs(t - wt) > 1e-3:
            sys.exit(f"FAIL: {tag} at step {s}: {v} at {t}, metrics.jsonl has {wv} at {wt}")
steps = [e.step for e in acc.Scalars("train/loss")]
if steps != list(range(1, 13)):
    sys.exit(f"FAIL: train/loss at steps {steps}, expected 1..12 once each")
print(f"PASS: {len(expected)} tags, {sum(len(w) for w in expected.values())} scalars read back by TensorBoard's "
      f"EventAccumulator match metrics.jsonl (steps 1-12 once each after a resume at step 6)")
PY
