#!/usr/bin/env bash
# byol-pretrain's progress output as users meet it: on a terminal one line rewritten in place and cut to the
# terminal's width; in a log (no terminal, or a launcher's pseudo-terminal as under mpirun) plain lines with
# timestamps. A pseudo-terminal comes from script(1) (util-linux/bsdutils, on every Debian).
#   pretrain_progress.sh BYOL_PRETRAIN WORK_DIR
set -uo pipefail
bin=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
if ! command -v script > /dev/null; then
  echo "SKIPPED: no script(1) to give byol-pretrain a pseudo-terminal (apt-get install bsdutils)"
  exit 77
fi
args=(--set data.train=synthetic:256:4:16:1 --set data.side=16 --set data.normalization=none --set data.workers=1
      --set model.base_channels=4 --set model.stem=cifar --set model.projector_hidden=32 --set model.projection_dim=16
      --set model.predictor_hidden=32 --set train.epochs=1 --set train.warmup_epochs=0 --set train.batch_size=64
      --set run.device=cpu --set run.log_every=1)
fails=0
fail() {
  echo "FAIL: $*"
  fails=$((fails + 1))
}
quote() { printf '%q ' "$@"; }

# 1. A terminal of 50 columns (script's pseudo-terminal has no size here, so COLUMNS gives it).
COLUMNS=50 script -qec "$(quote "$bin" "${args[@]}" --set run.out="$work/tty")" /dev/null > "$work/tty.txt" 2>&1 ||
  fail "the run on a pseudo-terminal failed: $(tail -3 "$work/tty.txt")"
# (a pseudo-terminal ends every line with \r\n; a line rewritten in place starts with a bare \r)
sed 's/\r$//' "$work/tty.txt" | grep -q $'\r' || fail "no line rewritten in place on a terminal"
# every piece of output between two carriage returns / newlines, escape sequences removed, fits in 49 columns
long="$(sed 's/\x1b\[K//g' "$work/tty.txt" | tr '\r' '\n' | grep '^epoch' | awk 'length($0) > 49' | head -1)"
[ -z "$long" ] || fail "a progress line wider than the 50-column terminal: '$long'"
grep -q '^\[20[0-9][0-9]-' "$work/tty.txt" && fail "timestamped lines on a terminal"

# 2. The same pseudo-terminal under a launcher (mpirun sets OMPI_COMM_WORLD_SIZE): plain timestamped lines.
OMPI_COMM_WORLD_SIZE=1 COLUMNS=50 script -qec "$(quote "$bin" "${args[@]}" --set run.out="$work/mpi")" /dev/null \
  > "$work/mpi.txt" 2>&1 || fail "the run under OMPI_COMM_WORLD_SIZE failed: $(tail -3 "$work/mpi.txt")"
sed 's/\r$//' "$work/mpi.txt" | grep -q $'\r' && fail "lines rewritten in place under a launcher"
grep -qE '^\[20[0-9]{2}-[0-9]{2}-[0-9]{2} [0-9:]{8}\] epoch 1\.00  step 4/4' <(tr -d '\r' < "$work/mpi.txt") ||
  fail "no timestamped progress lines under a launcher: $(head -5 "$work/mpi.txt")"

# 3. Output to a file: timestamped lines, no carriage returns.
"$bin" "${args[@]}" --set run.out="$work/log" > "$work/log.txt" 2>&1 || fail "the run into a file failed"
grep -q $'\r' "$work/log.txt" && fail "carriage returns in a log file"
[ "$(grep -cE '^\[20[0-9]{2}-[0-9]{2}-[0-9]{2} [0-9:]{8}\] epoch' "$work/log.txt")" -eq 4 ] ||
  fail "expected 4 timestamped progress lines in the log: $(cat "$work/log.txt")"
[ $fails -eq 0 ] && echo "PASS: progress in place and within the width on a terminal, timestamped lines in logs and under launchers" || exit 1
