#!/usr/bin/env bash
# byol-pretrain under mpirun -np 2: a signal that reaches only one rank stops both at the same step with
# one checkpoint (no rank left waiting in a collective), and the run resumes from it on 2 ranks. Then
# SIGUSR1 sent to mpirun itself (which forwards it to every rank, as a scheduler's warning signal would
# reach them) stops a second run, which evaluates kNN on the root every 5 steps, with a checkpoint too.
#   pretrain_signal.sh BYOL_PRETRAIN WORK_DIR MPIRUN...
set -euo pipefail
bin=$1
work=$2
shift 2
mpirun=("$@")
rm -rf "$work"
mkdir -p "$work"
args=(--set run.device=cpu --set data.train=synthetic:512:4:16:1 --set data.side=16
      --set data.normalization=none --set data.workers=1 --set model.base_channels=4 --set model.stem=cifar
      --set model.projector_hidden=32 --set model.projection_dim=16 --set model.predictor_hidden=32
      --set train.epochs=8 --set train.batch_size=64 --set train.warmup_epochs=1
      --set run.log_every=5 --set run.checkpoint_every=10 --set run.knn_every=0 --set run.out="$work/run")

timeout 300 "${mpirun[@]}" "$bin" "${args[@]}" > "$work/first.log" 2>&1 &
launcher=$!
for _ in $(seq 1 1200); do
  if ls "$work/run/checkpoints/"step_*.safetensors > /dev/null 2>&1; then break; fi
  sleep 0.05
done
ranks=$(pgrep -f -- "$bin .*$work/run" | while read -r p; do
  [ "$(ps -o comm= -p "$p")" = "byol-pretrain" ] && echo "$p"; done || true)
[ "$(echo "$ranks" | wc -w)" -eq 2 ] || { cat "$work/first.log"; echo "FAIL: expected 2 byol-pretrain ranks, found: $ranks"; exit 1; }
one=$(echo "$ranks" | tail -1)
kill -INT "$one"  # one rank only
set +e
wait "$launcher"
rc=$?
set -e
cat "$work/first.log"
[ $rc -ne 124 ] || { echo "FAIL: the ranks hung after a signal to one of them (killed by timeout)"; exit 1; }
step=$(sed -n -E 's/^(interrupted|terminated) at step ([0-9]+): checkpoint written.*/\2/p' "$work/first.log" | head -1)
[ -n "$step" ] || { echo "FAIL: no 'checkpoint written' line after the signal"; exit 1; }
[ $((step % 5)) -eq 0 ] || { echo "FAIL: stopped at step $step, not at a log point (log_every = 5)"; exit 1; }
ckpt=$(printf '%s/run/checkpoints/step_%08d.safetensors' "$work" "$step")
[ -f "$ckpt" ] || { ls "$work/run/checkpoints"; echo "FAIL: $ckpt missing"; exit 1; }

timeout 300 "${mpirun[@]}" "$bin" "${args[@]}" --resume > "$work/resume.log" 2>&1 ||
  { cat "$work/resume.log"; echo "FAIL: the resumed 2-rank run failed"; exit 1; }
grep -q "resumed from .*step_0*$step.safetensors at step $step" "$work/resume.log" ||
  { cat "$work/resume.log"; echo "FAIL: did not resume at step $step"; exit 1; }
grep -q "^done:" "$work/resume.log" || { cat "$work/resume.log"; echo "FAIL: the resumed run did not finish"; exit 1; }

# (with the kNN monitor every 5 steps: the root evaluates while the other rank waits in a barrier)
timeout 300 "${mpirun[@]}" "$bin" "${args[@]}" --set train.epochs=400 --set run.out="$work/usr1" \
  --set data.knn_train=synthetic:128:4:16:1 --set data.knn_test=synthetic:64:4:16:1 --set run.knn_every=5 \
  > "$work/usr1.log" 2>&1 &
launcher=$!
for _ in $(seq 1 1200); do  # running: a few progress lines written
  [ "$(grep -c ' loss ' "$work/usr1.log" 2>/dev/null)" -ge 3 ] && break
  sleep 0.05
done
mpirun_pid=$(pgrep -P "$launcher" | head -1 || true)  # timeout's child
[ -n "$mpirun_pid" ] || { cat "$work/usr1.log"; echo "FAIL: no mpirun under timeout"; exit 1; }
kill -USR1 "$mpirun_pid"
set +e
wait "$launcher"
rc=$?
set -e
[ $rc -ne 124 ] || { cat "$work/usr1.log"; echo "FAIL: the ranks hung after SIGUSR1 to mpirun"; exit 1; }
usr1=$(sed -n -E 's/^stopped by SIGUSR1 at step ([0-9]+): checkpoint written.*/\1/p' "$work/usr1.log" | head -1)
[ -n "$usr1" ] || { cat "$work/usr1.log"; echo "FAIL: no checkpoint after SIGUSR1 to mpirun"; exit 1; }
[ -f "$(printf '%s/usr1/checkpoints/step_%08d.safetensors' "$work" "$usr1")" ] ||
  { ls "$work/usr1/checkpoints"; echo "FAIL: the SIGUSR1 checkpoint is missing"; exit 1; }
[ "$(grep -c 'kNN top-1' "$work/usr1.log")" -ge 2 ] ||
  { cat "$work/usr1.log"; echo "FAIL: the 2-rank run with the kNN monitor logged fewer than 2 evaluations"; exit 1; }
echo "PASS: a signal to one of 2 ranks stopped both at step $step with one checkpoint; resumed and finished;" \
  "SIGUSR1 to mpirun stopped a run (kNN every 5 steps) at step $usr1 with a checkpoint"
