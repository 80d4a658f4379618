#!/usr/bin/env bash
# scripts/gpu_check.sh --dry-run on a machine without a GPU: the whole orchestration runs (GPU steps skipped,
# their commands printed, nothing built) and OUT_DIR gets what the GPU machine would send back: at most 8
# files, summary.txt (the summary, steps in order of value) and logs.tgz (a valid tar.gz with the logs and
# the smoke run's metrics, without checkpoints). Also: a step selection, and a bad one rejected clearly.
# With this build's byol-pretrain and byol_step_bench: every command line the dry run prints for them is
# accepted (byol-pretrain --print-config with its settings; byol_step_bench parses its flags before it says
# that it has no GPU), so a misspelt key or flag fails here and not on the GPU machine.
#   gpu_check_dry_run.sh GPU_CHECK_SH WORK_DIR [BYOL_PRETRAIN BYOL_STEP_BENCH]
set -uo pipefail
script=$1
work=$2
pretrain_here=${3:-}
bench_here=${4:-}
rm -rf "$work"
mkdir -p "$work"
fails=0
fail() {
  echo "FAIL: $*"
  fails=$((fails + 1))
}
unset GPU_CHECK_STEPS GPU_CHECK_BUDGET_S GPU_CHECK_BUILD GPU_CHECK_SANITIZE_SPEC GPU_CHECK_INITCHECK_SPEC

# --- the whole dry run ------------------------------------------------------------------------------------------
out="$work/out"
OUT="$out" GPU_CHECK_SCRATCH="$work/scratch" bash "$script" --dry-run >"$work/stdout.txt" 2>&1
rc=$?
[ $rc -eq 0 ] || fail "gpu_check.sh --dry-run exited $rc; its output ends with: $(tail -5 "$work/stdout.txt")"

nfiles="$(find "$out" -type f | wc -l)"
[ "$nfiles" -le 8 ] || fail "OUT holds $nfiles files; the GPU machine returns at most 8: $(find "$out" -type f | sort | tr '\n' ' ')"
listing="$(cd "$out" && find . -mindepth 1 | sed 's|^\./||' | sort | tr '\n' ' ')"
[ "$listing" = "logs.tgz summary.txt " ] || fail "OUT should hold exactly logs.tgz and summary.txt, holds: $listing"

summary="$out/summary.txt"
if [ ! -f "$summary" ]; then
  fail "no summary.txt in OUT"
else
  head -1 "$summary" | grep -q '^=== gpu_check summary.*DRY RUN' ||
    fail "summary.txt does not begin with its '=== gpu_check summary ... DRY RUN' header: $(head -1 "$summary")"
  # the steps in order of value: build, [cuda] tests, smoke run, NCCL, benchmarks, labs, memcheck, initcheck,
  # learning check
  prev=0
  for want in '^build ' '^\[cuda\] tests' '^byol-pretrain GPU smoke' '^NCCL \[nccl\]' \
              '^step resnet18_cifar_b512 \(byol.cpp\)' '^scaling model' '^lab batch_norm_lab' '^memcheck ' \
              '^initcheck ' '^learning check'; do
    n="$(grep -n -m1 -E "$want" "$summary" | cut -d: -f1)"
    if [ -z "$n" ]; then fail "summary.txt has no line matching '$want'"
    elif [ "$n" -le "$prev" ]; then fail "summary.txt: '$want' (line $n) comes before the step above it (line $prev)"
    else prev=$n; fi
  done
  grep -E '^(build|\[cuda\]|memcheck|initcheck|one-rank|byol-pretrain|learning|lab |step |scaling)' "$summary" | grep -vq ' SKIP ' &&
    fail "a dry run should report every GPU step as skipped: $(grep -vE ' SKIP |^setup|^result|^===' "$summary" | head -3)"
  # each summary line is echoed as it is recorded
  while read -r line; do
    grep -qxF "== $line" "$work/stdout.txt" || fail "summary line not echoed to stdout when recorded: $line"
  done < <(sed -n '3,$p' "$summary" | sed '/^$/,$d')
  grep -q 'dry run, would run: .*byol_tests' "$work/stdout.txt" || fail "the dry run did not print the [cuda] tests' command"
fi

tgz="$out/logs.tgz"
if [ ! -f "$tgz" ]; then
  fail "no logs.tgz in OUT"
elif ! gzip -t "$tgz" 2>/dev/null || ! tar -tzf "$tgz" >"$work/logs.list" 2>"$work/tar.err"; then
  fail "logs.tgz is not a valid tar.gz: $(head -c 300 "$work/tar.err")"
else
  for want in summary.txt steps.json logs/cuda_tests.log logs/memcheck.log logs/initcheck.log logs/nccl.log \
              logs/pretrain_smoke.log runs/pretrain_smoke/metrics.jsonl; do
    grep -qxF "$want" "$work/logs.list" || fail "logs.tgz lacks $want; it holds: $(tr '\n' ' ' <"$work/logs.list")"
  done
  grep -E '\.safetensors$|(^|/)checkpoints/' "$work/logs.list" &&
    fail "logs.tgz holds checkpoints or exported weights (listed above)"
  # the dry run leaves a stand-in checkpoint where the real run writes one: it must be what was left out
  [ -f "$work/scratch/runs/pretrain_smoke/checkpoints/step_00000016.safetensors" ] ||
    fail "the dry run wrote no stand-in checkpoint, so leaving checkpoints out was not tested"
  if command -v python3 >/dev/null; then
    tar -xzOf "$tgz" steps.json | python3 -c 'import json, sys; r = json.load(sys.stdin); assert r and all("status" in x for x in r)' ||
      fail "steps.json in logs.tgz is not a JSON list of results"
  fi
fi

# --- the programs accept what the GPU machine will pass them --------------------------------------------------
if [ -n "$pretrain_here" ] && [ -n "$bench_here" ]; then
  checked=0
  while IFS= read -r line; do
    cmd="${line#*&& }"
    cmd="${cmd%)   # timeout*}"
    eval "argv=($cmd)"
    case "${argv[0]}" in
      */apps/byol-pretrain)
        argv[0]=$pretrain_here
        cfg_out="$("${argv[@]}" --print-config 2>&1)" ||
          fail "byol-pretrain rejects gpu_check's arguments:$(printf ' %q' "${argv[@]:1}"): $(tail -2 <<<"$cfg_out")"
        checked=$((checked + 1)) ;;
      */benchmarks/byol_step_bench)
        argv[0]=$bench_here
        bench_out="$("${argv[@]}" 2>&1)"
        grep -qE "this build has no CUDA backend|no CUDA device is visible" <<<"$bench_out" ||
          fail "byol_step_bench rejects gpu_check's arguments:$(printf ' %q' "${argv[@]:1}"): $(tail -2 <<<"$bench_out")"
        checked=$((checked + 1)) ;;
    esac
  done < <(grep -E '^gpu_check: dry run, would run: .*(apps/byol-pretrain|benchmarks/byol_step_bench) ' "$work/stdout.txt")
  [ "$checked" -ge 10 ] || fail "expected at least 10 byol-pretrain / byol_step_bench command lines in the dry run, found $checked"
fi

# --- a selection runs only the named steps, in the order of value -------------------------------------------
OUT="$work/out_sel" GPU_CHECK_SCRATCH="$work/scratch_sel" GPU_CHECK_STEPS="nccl,cuda_tests" bash "$script" --dry-run \
  >"$work/stdout_sel.txt" 2>&1 || fail "GPU_CHECK_STEPS=nccl,cuda_tests --dry-run exited $?"
results="$(sed -n '3,$p' "$work/out_sel/summary.txt" | sed '/^$/,$d' | cut -c1-20 | sed 's/ *$//' | tr '\n' '|')"
[ "$results" = "setup|[cuda] tests (no NCC|NCCL [nccl], one ran|" ] ||
  fail "GPU_CHECK_STEPS=nccl,cuda_tests should record setup, [cuda] tests, NCCL in that order; recorded: $results"

# --- an unknown step name stops the check at once, saying which --------------------------------------------------
OUT="$work/out_bad" GPU_CHECK_SCRATCH="$work/scratch_bad" GPU_CHECK_STEPS="cuda_tests,memchek" bash "$script" --dry-run \
  >"$work/stdout_bad.txt" 2>&1
rc=$?
[ $rc -eq 2 ] || fail "an unknown step should exit 2, exited $rc"
grep -q "unknown step(s): memchek" "$work/stdout_bad.txt" || fail "an unknown step should be named: $(tail -3 "$work/stdout_bad.txt")"
grep -q "unknown step(s): memchek" "$work/out_bad/summary.txt" 2>/dev/null ||
  fail "the setup failure should be in summary.txt too"

if [ $fails -ne 0 ]; then
  echo "$fails check(s) failed; the dry run's output: $work/stdout.txt"
  exit 1
fi
echo "ok: gpu_check.sh --dry-run: $(tr '\n' ' ' <"$work/logs.list" | wc -w) files in logs.tgz, OUT = summary.txt + logs.tgz"
