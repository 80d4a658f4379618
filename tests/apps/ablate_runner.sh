#!/usr/bin/env bash
# scripts/ablate.sh (issue 16) on a tiny synthetic base config: every named ablation is pretrained and scored,
# the Markdown table has one row per ablation with numbers and the paper's figure, a finished run is not
# run again, and an unknown ablation is a usage error naming the ones that exist.
#   ablate_runner.sh BUILD_DIR WORK_DIR
set -uo pipefail
build=$1
work=$2
root="$(cd "$(dirname "$0")/../.." && pwd)"
rm -rf "$work"
mkdir -p "$work"
cat > "$work/base.toml" <<'TOML'
[data]
train = "synthetic:256:4:16:1"
knn_train = "synthetic:128:4:16:2"
knn_test = "synthetic:64:4:16:3"
side = 16
normalization = "none"
workers = 1
[model]
base_channels = 4
stem = "cifar"
projector_hidden = 32
projection_dim = 16
predictor_hidden = 32
[train]
epochs = 2
warmup_epochs = 0.5
batch_size = 64
[run]
device = "cpu"
log_every = 2
TOML
BUILD=$build LINEAR_EPOCHS=1 "$root/scripts/ablate.sh" "$work/base.toml" "$work/out" byol tau_0 no_target simclr > "$work/first.log" 2>&1 ||
  { tail -5 "$work/first.log"; echo "FAIL: ablate.sh"; exit 1; }
for name in byol tau_0 no_target simclr; do
  grep -qE "^\| \`$name\` \| [0-9.]+ \| [0-9.]+ \| [+-][0-9.]+ \| [0-9.]+ \| (yes|no) \| .+ \|$" "$work/out/ablations.md" ||
    { cat "$work/out/ablations.md"; echo "FAIL: no row for $name"; exit 1; }
done
grep -q "tau_schedule = \"constant\"" "$work/out/tau_0/config.toml" && grep -q "tau_base = 0$" "$work/out/tau_0/config.toml" &&
  grep -q '"tau":0.0[,}]' "$work/out/tau_0/metrics.jsonl" ||
  { grep tau "$work/out/tau_0/config.toml"; echo "FAIL: tau_0 did not run with tau = 0 throughout"; exit 1; }
grep -q "target_network = false" "$work/out/no_target/config.toml" || { echo "FAIL: no_target's key not applied"; exit 1; }
grep -q "^beta = 1$" "$work/out/simclr/config.toml" && grep -q "stop_gradient = false" "$work/out/simclr/config.toml" ||
  { echo "FAIL: simclr's keys not applied"; exit 1; }
# Every preset is a valid set of keys (byol-pretrain --dry-run checks the whole configuration).
for f in "$root"/configs/ablations/*.toml; do
  sets=()
  while IFS= read -r kv; do sets+=(--set "$kv"); done < <(python3 - "$f" <<'PY'
import sys, tomllib
for section, keys in tomllib.load(open(sys.argv[1], "rb")).items():
    for key, value in keys.items():
        print(f"{section}.{key}={('true' if value else 'false') if isinstance(value, bool) else value}")
PY
)
  [ ${#sets[@]} -gt 0 ] || [ "$(basename "$f")" = byol.toml ] || { echo "FAIL: $f sets no key"; exit 1; }
  # (4096 synthetic images: enough for one batch of the largest batch-size row)
  "$build/apps/byol-pretrain" --config "$work/base.toml" --set data.train=synthetic:4096:4:16:1 "${sets[@]}" \
    --set run.out="$work/dry" --dry-run \
    > "$work/dry.log" 2>&1 || { tail -3 "$work/dry.log"; echo "FAIL: configs/ablations/$(basename "$f") is rejected"; exit 1; }
done
before=$(stat -c %Y "$work/out/byol/encoder.safetensors")
BUILD=$build LINEAR_EPOCHS=1 "$root/scripts/ablate.sh" "$work/base.toml" "$work/out" byol > "$work/again.log" 2>&1 ||
  { tail -3 "$work/again.log"; echo "FAIL: ablate.sh again"; exit 1; }
[ "$(stat -c %Y "$work/out/byol/encoder.safetensors")" = "$before" ] || { echo "FAIL: a finished run was run again"; exit 1; }
BUILD=$build "$root/scripts/ablate.sh" "$work/base.toml" "$work/out" no_such > "$work/bad.log" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "no configs/ablations/no_such.toml (have: .*random_target" "$work/bad.log" ||
  { cat "$work/bad.log"; echo "FAIL: an unknown ablation should exit 2 naming the ones that exist (got $rc)"; exit 1; }
echo "PASS: every preset accepted; four ablations run and tabulated; a finished run is kept; an unknown name is a usage error"
