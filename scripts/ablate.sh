#!/usr/bin/env bash
# The paper's ablations, one command: each configs/ablations/<name>.toml (the keys it changes) applied on top
# of a base config, pretrained by byol-pretrain, scored by kNN (the base config's kNN sets, at step 0 and at
# the end) and a linear probe (byol-eval linear on the same sets), and written as one Markdown table next to
# the paper's figure for the row (taken from each file's comment; marked where not confirmed).
#
#   scripts/ablate.sh BASE_CONFIG OUT_DIR [ABLATION ...] [-- BYOL_PRETRAIN_ARGS ...]
#
#   scripts/ablate.sh configs/cifar10_short.toml runs/ablations byol tau_0 no_predictor no_target \
#       random_target no_predictor_no_target
#
# Without ABLATION names it runs every file in configs/ablations/. Arguments after `--` go to every
# byol-pretrain run (e.g. `-- --set train.epochs=1`). Each run resumes if it was interrupted
# (--auto-resume); a finished one is not run again. Environment: BUILD (default build), LINEAR_EPOCHS (10),
# PYTHON (python3, for tomllib). Results: OUT_DIR/<name>/ (the run folder, linear.json) and
# OUT_DIR/ablations.md.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
if [ $# -lt 2 ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 2
fi
base=$1
out=$2
shift 2
names=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do names+=("$1"); shift; done
[ $# -gt 0 ] && shift
extra=("$@")
build=${BUILD:-$root/build}
python=${PYTHON:-python3}
pretrain=$build/apps/byol-pretrain
evaluate=$build/apps/byol-eval
for b in "$pretrain" "$evaluate"; do
  [ -x "$b" ] || { echo "ablate: $b is missing (build first, or set BUILD)" >&2; exit 2; }
done
[ -f "$base" ] || { echo "ablate: base config $base does not exist" >&2; exit 2; }
if [ ${#names[@]} -eq 0 ]; then
  for f in "$root"/configs/ablations/*.toml; do names+=("$(basename "$f" .toml)"); done
fi
for name in "${names[@]}"; do
  [ -f "$root/configs/ablations/$name.toml" ] ||
    { echo "ablate: no configs/ablations/$name.toml (have: $(ls "$root/configs/ablations" | sed 's/\.toml//' | tr '\n' ' '))" >&2; exit 2; }
done
mkdir -p "$out"

# An ablation file's keys as --set arguments, one per line.
overrides() {
  "$python" - "$1" <<'PY'
import sys, tomllib
for section, keys in tomllib.load(open(sys.argv[1], "rb")).items():
    for key, value in keys.items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        print(f"{section}.{key}={text}")
PY
}
# A key of a run's effective configuration.
config_key() {
  "$python" -c 'import sys, tomllib; s, k = sys.argv[2].split("."); print(tomllib.load(open(sys.argv[1], "rb"))[s][k])' "$1" "$2"
}

for name in "${names[@]}"; do
  run=$out/$name
  sets=()
  while IFS= read -r kv; do sets+=(--set "$kv"); done < <(overrides "$root/configs/ablations/$name.toml")
  echo "ablate: $name: byol-pretrain --config $base ${sets[*]} ${extra[*]}"
  if [ ! -f "$run/encoder.safetensors" ]; then
    "$pretrain" --config "$base" "${sets[@]}" "${extra[@]}" --set run.out="$run" --auto-resume > "$run.log" 2>&1 ||
      { tail -5 "$run.log"; echo "ablate: $name: byol-pretrain failed (log: $run.log)" >&2; exit 1; }
  fi
  if [ ! -f "$run/linear.json" ]; then
    cfg=$run/config.toml
    "$evaluate" linear --encoder "$run/encoder.safetensors" --train "$(config_key "$cfg" data.knn_train)" \
      --test "$(config_key "$cfg" data.knn_test)" --side "$(config_key "$cfg" data.side)" \
      --normalization "$(config_key "$cfg" data.normalization)" --center-fraction 1 --epochs "${LINEAR_EPOCHS:-10}" \
      --json "$run/linear.json" > "$run.linear.log" 2>&1 ||
      { tail -3 "$run.linear.log"; echo "ablate: $name: byol-eval linear failed" >&2; exit 1; }
  fi
done

"$python" - "$root" "$out" "$base" "${LINEAR_EPOCHS:-10}" "${names[@]}" <<'PY'
import json, os, sys
root, out, base, linear_epochs, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
rows = []
for name in names:
    comment = " ".join(l[1:].strip() for l in open(os.path.join(root, "configs", "ablations", f"{name}.toml"))
                       if l.startswith("#"))
    knn = [json.loads(l) for l in open(os.path.join(out, name, "metrics.jsonl")) if '"knn_top1"' in l]
    warned = any('"collapse_warning"' in l for l in open(os.path.join(out, name, "metrics.jsonl")))
    linear = json.load(open(os.path.join(out, name, "linear.json")))["top1"]
    start, end = (knn[0]["knn_top1"], knn[-1]["knn_top1"]) if knn else (float("nan"), float("nan"))
    paper = comment[comment.find("Paper"):] if "Paper" in comment else "-"
    rows.append(f"| `{name}` | {100 * start:.2f} | {100 * end:.2f} | {100 * (end - start):+.2f} | "
                f"{100 * linear:.2f} | {'yes' if warned else 'no'} | {paper} |")
table = "\n".join([
    f"Base config `{base}`; kNN (k = 200) on its kNN sets at step 0 and at the end; linear probe: byol-eval "
    f"linear, {linear_epochs} epochs, same sets. Paper figures: ImageNet, 300 epochs, linear top-1.", "",
    "| ablation | kNN step 0 | kNN end | gain | linear top-1 | collapse warned | paper |",
    "| --- | --- | --- | --- | --- | --- | --- |"] + rows)
open(os.path.join(out, "ablations.md"), "w").write(table + "\n")
print(table)
PY
