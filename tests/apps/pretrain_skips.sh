#!/usr/bin/env bash
# byol-pretrain with data.skip_corrupt: every skipped image is reported by the end of the run, on stderr and
# in metrics.jsonl, also in the run's last epoch (whose end the loader never reaches: the run stops at its
# last step without asking for another batch, so the loader's own end-of-epoch line never came).
#   pretrain_skips.sh BYOL_PRETRAIN WORK_DIR [PYTHON]
set -uo pipefail
bin=$1
work=$2
python=${3:-/usr/bin/python3}
rm -rf "$work"
mkdir -p "$work/images/a" "$work/images/b"
if ! "$python" -c 'import PIL' 2>/dev/null; then
  echo "SKIPPED: $python has no PIL to write the test images (scripts/setup.sh installs python3-torchvision)"
  exit 77
fi
"$python" - "$work/images" <<'PY'
import sys
from PIL import Image
root = sys.argv[1]
for c, colour in (("a", (200, 30, 30)), ("b", (30, 30, 200))):
    for i in range(12):
        Image.new("RGB", (16, 16), tuple((v + 7 * i) % 256 for v in colour)).save(f"{root}/{c}/{i:02d}.png")
for i in range(4):  # not images at all
    open(f"{root}/a/corrupt{i}.jpg", "wb").write(b"\xff\xd8 this is not a JPEG " * 3)
PY
# 28 files, batch 4: 7 steps per epoch, 2 epochs; 4 of the 28 cannot be decoded.
"$bin" --set data.train="folder:$work/images" --set data.side=16 --set data.normalization=none \
  --set data.skip_corrupt=true --set data.workers=1 --set model.base_channels=4 --set model.stem=cifar \
  --set model.projector_hidden=16 --set model.projection_dim=8 --set model.predictor_hidden=16 \
  --set train.batch_size=4 --set train.epochs=2 --set train.warmup_epochs=0 --set run.device=cpu \
  --set run.log_every=1 --set run.out="$work/run" > "$work/out.log" 2> "$work/err.log"
rc=$?
fails=0
[ $rc -eq 0 ] || { echo "FAIL: byol-pretrain exited $rc: $(tail -3 "$work/err.log")"; exit 1; }
for epoch in 0 1; do
  grep -q "skipped [0-9]* corrupt image(s) in epoch $epoch" "$work/err.log" ||
    { echo "FAIL: no stderr report of the skips of epoch $epoch: $(cat "$work/err.log")"; fails=$((fails + 1)); }
  n=$(grep '"skipped_image"' "$work/run/metrics.jsonl" | grep -c "\"epoch\":$epoch[,}]")
  [ "$n" -eq 4 ] || { echo "FAIL: metrics.jsonl lists $n skipped images in epoch $epoch, expected 4"; fails=$((fails + 1)); }
done
grep '"skipped_image"' "$work/run/metrics.jsonl" | grep -q 'corrupt0.jpg' ||
  { echo "FAIL: the skipped images are not named in metrics.jsonl"; fails=$((fails + 1)); }
[ $fails -eq 0 ] && echo "PASS: every skipped image of both epochs reported on stderr and in metrics.jsonl" || exit 1
