#!/usr/bin/env bash
# Fuzzes byol.cpp's readers of untrusted input with libFuzzer (fuzz/README.md; README.md, "Fuzzing
# and sanitizers").
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]    default: 600 s each, every target
# Targets: safetensors checkpoint encoder idx cifar stl10 packed image tar config.
# Steps: installs clang-14 and libclang-rt-14-dev when missing; configures build-fuzz/ with clang,
# -DBYOL_FUZZ=ON -DBYOL_SANITIZE=address,undefined -DBYOL_CUDA=OFF and builds the targets; writes the
# seed corpora (fuzz/make_seeds, plus fuzz/regressions/) into build-fuzz/corpus/<target>/, where what the
# fuzzer finds interesting accumulates from run to run; runs each target for the given time (2 GB RSS
# limit, 10 s per input, one OpenMP thread) with its log in build-fuzz/logs/<target>.log and any crash,
# timeout or out-of-memory input in build-fuzz/crashes/<target>/; prints executions per target.
# Exits 1 when any target found something (replay it: build-fuzz/fuzz/fuzz_replay_<target> --verbose FILE).
# Environment: JOBS (build parallelism, default nproc), BUILD_DIR (default build-fuzz).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
all=(safetensors checkpoint encoder idx cifar stl10 packed image tar config)
seconds=${1:-600}
[ $# -gt 0 ] && shift
if ! [[ $seconds =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]   (targets: ${all[*]})" >&2
  exit 2
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
for t in "${targets[@]}"; do
  if [[ " ${all[*]} " != *" $t "* ]]; then
    echo "fuzz: unknown target '$t' (targets: ${all[*]})" >&2
    exit 2
  fi
done

# --- clang 14 and libFuzzer (as scripts/setup.sh installs its packages) ---------------------------------
packages=(clang-14 libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "fuzz: installing ${missing[*]}"
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- build ---------------------------------------------------------------------------------------------
build=${BUILD_DIR:-$root/build-fuzz}
jobs=${JOBS:-$(nproc)}
mkdir -p "$build"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DBYOL_CUDA=OFF -DBYOL_FUZZ=ON -DBYOL_SANITIZE=address,undefined -DBYOL_TESTS=OFF -DBYOL_BENCHMARKS=OFF \
  >"$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
build_targets=(make_seeds)
for t in "${targets[@]}"; do build_targets+=("fuzz_$t" "fuzz_replay_$t"); done
cmake --build "$build" -j "$jobs" --target "${build_targets[@]}"

# --- seed corpora --------------------------------------------------------------------------------------
export OMP_NUM_THREADS=1
# The targets' scratch folders (fuzz/fuzz_util.h): a target that crashes cannot remove its own.
export TMPDIR="$build/tmp"
rm -rf "$TMPDIR" && mkdir -p "$TMPDIR"
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
"$build/fuzz/make_seeds" seeds "$build/corpus"
for t in "${targets[@]}"; do
  mkdir -p "$build/corpus/$t" "$build/crashes/$t" "$build/logs"
  cp "$root/fuzz/regressions/$t/"* "$build/corpus/$t/"
done

# --- fuzz ----------------------------------------------------------------------------------------------
declare -A execs rates results
failed=0
for t in "${targets[@]}"; do
  log="$build/logs/$t.log"
  echo "fuzz: $t for ${seconds} s (log: $log)"
  touch "$log.start"
  rc=0
  "$build/fuzz/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$build/crashes/$t/" "$build/corpus/$t" >"$log" 2>&1 || rc=$?
  execs[$t]=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rates[$t]=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  found=$(find "$build/crashes/$t" -type f -newer "$log.start" | tr '\n' ' ')
  rm -f "$log.start"
  if [ "$rc" -ne 0 ] || [ -n "$found" ]; then
    failed=1
    results[$t]="FOUND (exit $rc): ${found:-see $log}"
    grep -a -m3 -E 'ERROR: |FINDING|runtime error' "$log" | sed 's/^/    /' || true
  else
    results[$t]="ok"
  fi
done

echo
printf '%-12s %14s %10s  %s\n' target executions exec/s result
for t in "${targets[@]}"; do
  printf '%-12s %14s %10s  %s\n' "$t" "${execs[$t]:-?}" "${rates[$t]:-?}" "${results[$t]}"
done
exit $failed
