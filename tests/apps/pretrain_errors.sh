#!/usr/bin/env bash
# byol-pretrain rejects bad configuration with one clear line naming the key (exit status 1).
#   pretrain_errors.sh BYOL_PRETRAIN WORK_DIR
set -uo pipefail
bin=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
fails=0
expect() {  # expect "message fragment" args...
  local want=$1
  shift
  local out rc
  out=$("$bin" "$@" 2>&1)
  rc=$?
  if [ $rc -eq 0 ] || ! grep -qF -- "$want" <<< "$out"; then
    echo "FAIL: byol-pretrain $* -> exit $rc, expected a message containing '$want'; got:"
    echo "$out" | tail -3
    fails=$((fails + 1))
  else
    echo "ok: $(grep -F -- "$want" <<< "$out" | head -1)"
  fi
}
printf '[train]\nepochs = 2\nbogus = 1\n' > "$work/unknown.toml"
printf '[train]\nepochs = "many"\n' > "$work/type.toml"
printf '[train\nepochs = 2\n' > "$work/syntax.toml"
expect "key 'train.bogus': unknown key (keys of that section: train.accumulation_steps, train.base_lr" --config "$work/unknown.toml"
expect "key 'train.epochs': expected a number" --config "$work/type.toml"
expect "syntax.toml:1" --config "$work/syntax.toml"
expect "config key 'model.depth': expected 18, 34, 50, 101, 152 or 200, got 19" --set model.depth=19
expect "config key 'train.tau_base': expected 0..1, got 1.5" --set train.tau_base=1.5
expect "config key 'train.precision': expected \"auto\", \"fp32\" or \"bf16\", got 'fp16'" --set train.precision=fp16
expect "config key 'data.augment_on': expected \"cpu\" or \"gpu\", got 'tpu'" --set data.augment_on=tpu
expect 'data.augment_on = "gpu" augments on the GPU, and run.device = "cpu" chose cpu: set data.augment_on = "cpu" or run.device = "cuda"' --set data.augment_on=gpu --set run.device=cpu
expect 'train.cuda_graph = true captures the step on a GPU, and run.device = "cpu" chose cpu: set train.cuda_graph = false or run.device = "cuda"' --set train.cuda_graph=true --set run.device=cpu
expect "--set train.cuda_graph: expected true or false" --set train.cuda_graph=yes
expect 'train.cpu_bf16_activations = true stores activations in bf16 with bf16 precision, and train.precision = "fp32" chose fp32 on cpu: set train.precision = "bf16" or train.cpu_bf16_activations = false' --set train.cpu_bf16_activations=true --set train.precision=fp32 --set run.device=cpu
expect "--set model.heads: unknown key" --set model.heads=3
expect "--set train.base_lrr: unknown key; did you mean 'train.base_lr'?" --set train.base_lrr=0.1
expect "config key 'run.device': expected auto, cpu, cuda or cuda:N, got 'cuda:x'" --set run.device=cuda:x
expect "--set run.tf32: expected true or false" --set run.tf32=2
expect "--set augment.jitter_strenght: unknown key; did you mean 'augment.jitter_strength'?" --set augment.jitter_strenght=1
expect "expected section.key=value" --set train.epochs
expect "missing.toml" --config "$work/missing.toml"
expect "has fewer images per rank than one batch of 256" --set data.train=synthetic:64:2:8 --set data.side=8 --set run.out="$work/x"
expect "--resume: no checkpoint in" --resume --set data.train=synthetic:64:2:8 --set run.out="$work/empty" --set data.side=8 --set train.batch_size=16 --set model.base_channels=2
expect "config key 'run.device': expected auto, cpu, cuda or cuda:N, got 'gpu'" --set run.device=gpu
# A dataset that cannot be opened is named by its key, also the kNN sets a config sets (and --dry-run opens them).
expect "data.knn_train = \"folder:$work/no_such_folder\": ImageFolder:" --set data.train=synthetic:64:2:8 --set data.side=8 \
  --set train.batch_size=16 --set data.knn_train="folder:$work/no_such_folder" --set data.knn_test=synthetic:16:2:8:1 --dry-run
expect "data.train = \"folder:$work/no_such_folder\": ImageFolder:" --set data.train="folder:$work/no_such_folder"
# Integers too large for their field, and non-finite numbers, are errors (not wrapped or clamped).
expect "--set data.side: expected an integer in -2147483648..2147483647, got 4294967328" --set data.side=4294967328
expect "--set train.epochs: expected a finite number, got inf" --set train.epochs=inf
expect "--set train.base_lr: expected a finite number, got" --set train.base_lr=nan
expect "--set train.seed: expected an integer in 0..18446744073709551615, got -1" --set train.seed=-1
expect "config key 'train.epochs': expected 0 < epochs <= 1000000, got 1e+300" --set train.epochs=1e300
# Strings with quotes, backslashes and newlines: the written configuration reads back as the same one.
"$bin" --print-config --set 'data.train="a \"quoted\" path\\x\nsecond line"' --set train.base_lr=0.123456789012345 \
  --set run.out="$work/o'ut" > "$work/written.toml" || { echo "FAIL: --print-config"; fails=$((fails + 1)); }
if "$bin" --print-config --config "$work/written.toml" > "$work/reread.toml" && cmp -s "$work/written.toml" "$work/reread.toml" &&
   grep -qF 'train = "a \"quoted\" path\\x\nsecond line"' "$work/written.toml"; then
  echo "ok: the written configuration reads back unchanged"
else
  echo "FAIL: the written configuration does not read back:"
  cat "$work/written.toml"
  fails=$((fails + 1))
fi
# train.preset fills base_lr, weight_decay and tau_base with the paper's values for its length (here 1000
# epochs: 0.2, 1.5e-6, 0.996) where they are not given; an explicit key wins, and --print-config shows what
# the run uses (it once printed the explicit value and trained with the preset's).
preset="$("$bin" --print-config --set train.preset=1000 --set train.base_lr=0.7 | grep -E '^(base_lr|weight_decay|tau_base) =' | tr '\n' ' ')"
if [ "$preset" = "base_lr = 0.7 weight_decay = 1.5e-06 tau_base = 0.996 " ]; then
  echo "ok: train.preset fills what is not given, an explicit train.base_lr wins"
else
  echo "FAIL: train.preset = 1000 with --set train.base_lr=0.7 gives: $preset"
  fails=$((fails + 1))
fi
# Errors show the message alone; --verbose (or BYOL_VERBOSE=1) adds the source location that raised it.
"$bin" --set train.epochs=-1 > "$work/quiet.txt" 2>&1
"$bin" --set train.epochs=-1 --verbose > "$work/verbose.txt" 2>&1
if grep -q "got -1$" "$work/quiet.txt" && grep -qE 'got -1 \[pretrain_config\.cpp:[0-9]+\]$' "$work/verbose.txt"; then
  echo "ok: errors without the source location, --verbose with it"
else
  echo "FAIL: error text: '$(tail -1 "$work/quiet.txt")' / with --verbose: '$(tail -1 "$work/verbose.txt")'"
  fails=$((fails + 1))
fi
# Exit status: 2 for a usage error (an unknown option), 1 for an error while running (a bad value).
"$bin" --no-such-option > /dev/null 2>&1
rc_usage=$?
"$bin" --set train.epochs=-1 > /dev/null 2>&1
rc_value=$?
[ $rc_usage -eq 2 ] && [ $rc_value -eq 1 ] && echo "ok: exit status 2 for a usage error, 1 for a bad value" ||
  { echo "FAIL: exit status $rc_usage for an unknown option (expected 2), $rc_value for a bad value (expected 1)"; fails=$((fails + 1)); }
# --dry-run: the plan, the sizes and the first batch's shapes, and nothing written.
"$bin" --dry-run --set data.train=synthetic:300:3:16 --set data.side=16 --set train.batch_size=32 \
  --set model.base_channels=4 --set run.device=cpu --set run.out="$work/dry" > "$work/dry.txt" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "9 steps per epoch" "$work/dry.txt" && grep -q "first batch: views f32\[32, 16, 16, 3\]" "$work/dry.txt" &&
   [ ! -e "$work/dry" ]; then
  echo "ok: --dry-run printed the plan and the first batch and wrote nothing"
else
  echo "FAIL: --dry-run (exit $rc, run folder $([ -e "$work/dry" ] && echo written || echo absent)): $(cat "$work/dry.txt")"
  fails=$((fails + 1))
fi
# --version names the build: the revision and the optional parts.
if "$bin" --version > "$work/version.txt" 2>&1 && grep -qE '^byol-pretrain \(byol\.cpp [0-9a-f]+(\+changes)?|unknown revision' "$work/version.txt" &&
   grep -q 'with.*(.*, ' "$work/version.txt"; then
  echo "ok: --version: $(cat "$work/version.txt")"
else
  echo "FAIL: --version printed: $(cat "$work/version.txt")"
  fails=$((fails + 1))
fi
# run.device = cuda where there is no GPU (or no CUDA backend) is an error naming the key, not a CPU run.
if ! nvidia-smi -L > /dev/null 2>&1; then
  expect "config key 'run.device': \"cuda\"" --set run.device=cuda --set data.train=synthetic:64:2:8 --set data.side=8 --set train.batch_size=16 --set run.out="$work/nogpu"
fi
[ $fails -eq 0 ] && echo "PASS: every bad configuration was named" || exit 1
