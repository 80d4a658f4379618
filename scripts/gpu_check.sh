#!/usr/bin/env bash
# The GPU check (issues 6 and 11): build byol.cpp with CUDA on a machine with one NVIDIA GPU and run, in order
# of value, each step under its own timeout and all of them inside one deadline (GPU_CHECK_BUDGET_S, default
# 560 s, made for a remote machine that runs one command for at most 10 minutes):
#
#   build       configure and build the targets the selected steps need (capped: GPU_CHECK_BUILD_S, 420 s)
#   cuda_tests  byol_tests "[cuda]~[nccl]": every CUDA op, the whole BYOL step and the PyTorch reference step
#               against the CPU
#   smoke       byol-pretrain on the GPU: synthetic data, stop after 6 steps, --resume, kNN monitor, export
#   nccl        byol_tests "[nccl]": the one-rank NCCL job and DataParallel on one GPU presented as two
#               identical ranks, NCCL_DEBUG=WARN, on its own timeout (GPU_CHECK_NCCL_S, 90 s)
#   bench       byol_step_bench --device cuda next to the PyTorch reference, then the multi-GPU scaling model
#               (docs/scaling.md) from the measured ResNet-50 rate
#   labs        the kernel labs (validate against the CPU, then GB/s)
#   memcheck    compute-sanitizer memcheck on the kernel tests and the augmentation kernel's
#               (GPU_CHECK_SANITIZE_SPEC, "[cuda-kernels],[augment]")
#   initcheck   compute-sanitizer initcheck (unwritten outputs) on the kernel tests and the whole BYOL step
#               of the tiny network (GPU_CHECK_INITCHECK_SPEC, "[cuda-kernels],[cuda-step]")
#   learn       the learning-quality comparison of issue 12 (scripts/gpu_learning_check.sh): the cifar10-short
#               recipe trained by byol-pretrain and by the PyTorch reference on this GPU, seeds
#               GPU_CHECK_LEARN_SEEDS (default "0 1"), all at once, for GPU_CHECK_LEARN_S (300 s), run only
#               with that much time left before the deadline (else skipped, for a later call); needs
#               CIFAR-10 (.carry/cifar10.tar.gz, which prepare-carry copies from ../shared/data/)
#   ablate      the paper's ablations at GPU scale (issue 16): scripts/ablate.sh on configs/cifar10_gpu.toml
#               for the rows GPU_CHECK_ABLATIONS names (default "byol simclr no_predictor tau_0"), one after
#               another, capped at GPU_CHECK_ABLATE_S (300 s), only with 240 s left; finished rows are kept
#               in GPU_CHECK_SCRATCH/ablations/ and tabulated (ablations.md in logs.tgz), so a later call on a
#               warm machine goes on where this one stopped (a cut-off run records a SKIP line, so
#               GPU_CHECK_STEPS=left selects it again); needs CIFAR-10 as the learn step does
#
# The order (2026-12-05): what has never run on a GPU comes first (the [cuda] tests and smoke runs of the
# newest features, the data-parallel GPU path (nccl, about 20 s), the step figures next to PyTorch, the kernel
# labs); the sanitizers and the learning and ablation runs, which earlier GPU runs have passed or measured,
# come last, where a deadline cuts first.
#
#   scripts/gpu_check.sh [--dry-run] [OUT_DIR]   OUT_DIR: $OUT, else build-gpu-out/ in the repository
#   scripts/gpu_check.sh prepare-carry           on a Debian machine with scripts/setup.sh's packages
#
# What comes back. Logs and run outputs go to a scratch folder (GPU_CHECK_SCRATCH, default build-gpu-check/);
# OUT_DIR receives two files only, because the GPU machine returns at most 8 files of 16 MiB each:
#   summary.txt  one line per result, then an excerpt (about 3 kB) of every failing step's log;
#   logs.tgz     every log, metrics.jsonl, config.toml, scaling.md, steps.json (the results, one object per
#                line of the summary) and the summary; no checkpoints and no exported weights.
# Both are rewritten after every step, so a call cut short keeps what it finished. Each summary line is also
# printed as it is recorded, and each failing step's excerpt right after it, so the output's tail alone
# says what to fix.
#
# GPU_CHECK_STEPS selects steps: names from the list above, separated by commas or spaces, or
#   all      every step (the default);
#   left     the steps that have not passed in earlier calls on this machine (failed, skipped, cut off by the
#            deadline, or not reached), with the build (a no-op when nothing changed);
#   failed   the steps whose last result was a failure, with the build.
# The record of earlier calls is GPU_CHECK_SCRATCH/state.tsv; the build folder (GPU_CHECK_BUILD, default
# build-gpu/) is kept by a warm machine, so a second call continues an unfinished build.
#
# --dry-run runs the same orchestration on a machine without a GPU: GPU steps are reported as skipped and
# their commands are printed instead of run, nothing is configured or built, a stand-in smoke-run folder
# (with a placeholder checkpoint) is written where the real run writes one, and OUT_DIR gets the same
# two files. tests/apps/gpu_check_dry_run.sh checks that layout in ctest.
#
# Dependencies. Made for a GPU machine with nvcc, cmake, python3 and NVIDIA's pip packages but no Debian
# packages and no network; works as well with a system-wide CUDA toolkit, cuDNN and NCCL:
#  - cuDNN / NCCL: $CUDNN_ROOT / $NCCL_ROOT if set, else python3's site-packages/nvidia/{cudnn,nccl}, else
#    whatever CMake finds in the toolkit (without cuDNN the build still succeeds, but CUDA convolutions
#    throw, so their tests fail and say why); their folders go on LD_LIBRARY_PATH (cuDNN loads its engine
#    libraries with dlopen);
#  - Eigen, Catch2 (v2), nlohmann-json, zlib, CLI11, toml++: from the system, else from the git-ignored
#    .carry/ in the repository root, which `prepare-carry` fills from the Debian packages (headers, CMake
#    package files, libraries; relocatable, about 15 MB). zlib is carried as headers and the static libz.a
#    only, and no carried folder goes on LD_LIBRARY_PATH: the build tree's RPATH finds the carried toml++,
#    and every other program keeps the system's libraries. Without .carry/ on a machine that lacks one of
#    them, the check stops at once and says which;
#  - OpenBLAS, MPI, libjpeg, libpng are optional and simply reported as not found.
#
# Exit status: 0 every selected step passed; 1 a step failed; 2 the check could not start (setup); 3 nothing
# failed but steps were skipped or not reached (run again with GPU_CHECK_STEPS=left). A dry run exits 0
# unless its setup fails.
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
carry="$root/.carry"

# Header-only or build-time dependencies that a bare GPU machine lacks: copied with their CMake package
# files (which locate everything relative to themselves) from these Debian packages, /usr -> .carry.
carry_packages=(libeigen3-dev catch2 nlohmann-json3-dev zlib1g-dev libcli11-dev libtomlplusplus-dev)
# Packages carried without their shared libraries (headers and the static library suffice): a carried copy
# of a library every program uses must never stand in for the machine's own.
carry_static_only=(zlib1g-dev)

prepare_carry() {
  set -e
  rm -rf "$carry"
  mkdir -p "$carry"
  local pkg static_only f rel soname
  for pkg in "${carry_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      echo "gpu_check: $pkg is not installed here, skipping it (scripts/setup.sh installs it)"
      continue
    fi
    static_only=0
    [[ " ${carry_static_only[*]} " == *" $pkg "* ]] && static_only=1
    while read -r f; do
      [ -f "$f" ] || continue
      case "$f" in
        /usr/include/* | /usr/share/*/cmake/* | /usr/share/cmake/* | /usr/lib/cmake/* | /usr/lib/*/cmake/*)
          mkdir -p "$carry/$(dirname "${f#/usr/}")"
          cp "$f" "$carry/${f#/usr/}" ;;
        /usr/lib/*.a)
          mkdir -p "$carry/$(dirname "${f#/usr/}")"
          cp "$f" "$carry/${f#/usr/}" ;;
        /usr/lib/*.so | /lib/*.so)  # a development symlink: the library itself, also under its SONAME
          [ "$static_only" -eq 1 ] && continue
          rel="${f#/usr/}"
          rel="lib/${rel#lib/}"
          mkdir -p "$carry/$(dirname "$rel")"
          cp -L "$f" "$carry/$rel"
          soname="$(objdump -p "$f" 2>/dev/null | awk '/SONAME/ {print $2}')"
          if [ -n "$soname" ]; then cp -L "$f" "$carry/$(dirname "$rel")/$soname"; fi ;;
      esac
    done < <(dpkg -L "$pkg")
  done
  # CIFAR-10 for the learn step, when this checkout sits next to the shared data (about 20 MB)
  local cifar="$root/../shared/data/cifar10.tar.gz"
  if [ -f "$cifar" ]; then
    cp "$cifar" "$carry/cifar10.tar.gz"
  else
    echo "gpu_check: no $cifar: the learn step will be skipped unless .carry/cifar10.tar.gz is added"
  fi
  echo "gpu_check: prepared $carry ($(du -sh "$carry" | cut -f1)); carry it with the tree (the device tool: carry [\".carry\"])"
}

all_steps=(build cuda_tests smoke nccl bench labs memcheck initcheck learn ablate)
gpu_steps=" cuda_tests smoke bench labs memcheck initcheck nccl learn ablate "
labs=(batch_norm_lab byol_loss_lab ema_lab lars_lab cross_entropy_lab optimizers_lab elementwise_lab augment_lab)

usage() {
  sed -n '2,/^set -uo pipefail/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

dry=0
out_arg=""
if [ "${1:-}" = "prepare-carry" ]; then
  prepare_carry
  exit 0
fi
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "gpu_check: unknown option '$1' (scripts/gpu_check.sh --help lists the usage)" >&2; exit 2 ;;
    *)
      if [ -n "$out_arg" ]; then
        echo "gpu_check: one OUT_DIR only, got '$out_arg' and '$1'" >&2
        exit 2
      fi
      out_arg=$1 ;;
  esac
  shift
done

out="${out_arg:-${OUT:-$root/build-gpu-out}}"
build="${GPU_CHECK_BUILD:-$root/build-gpu}"
scratch="${GPU_CHECK_SCRATCH:-$root/build-gpu-check}"
mkdir -p "$out" "$scratch" || { echo "gpu_check: cannot create $out or $scratch" >&2; exit 2; }
out="$(cd "$out" && pwd)"
scratch="$(cd "$scratch" && pwd)"
logs="$scratch/logs"
runs="$scratch/runs"
state="$scratch/state.tsv"
case "$out/" in
  "$logs/"* | "$runs/"*) echo "gpu_check: OUT_DIR $out lies inside the scratch folders that each call empties" >&2
                         exit 2 ;;
esac
rm -rf "$logs" "$runs" "$scratch/excerpts.txt" "$scratch/steps.json"
mkdir -p "$logs" "$runs"
stray="$(find "$out" -mindepth 1 -maxdepth 1 ! -name summary.txt ! -name logs.tgz | wc -l)"
[ "$stray" -gt 0 ] && echo "gpu_check: note: $out already holds $stray other entries; the GPU machine returns at most 8 files"

# --- recording ----------------------------------------------------------------------------------------------
lines=()            # the summary lines of this call, in order
json=()             # the same results as JSON objects (steps.json)
declare -A result   # step -> PASS | FAIL | SKIP, this call
declare -A earlier  # step -> its last result in an earlier call (state.tsv)
failed=0
left=0
started="$(date -u '+%Y-%m-%d %H:%M UTC')"
header=""           # filled once the GPU is known

json_str() {  # text -> a JSON string literal
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\t'/ }
  s=${s//$'\r'/ }
  s=${s//$'\n'/ }
  printf '"%s"' "$(printf '%s' "$s" | tr -d '\000-\037')"
}

write_summary() {
  {
    echo "$header"
    printf '%-44s %-5s %s\n' "result" "state" "detail"
    local l
    for l in "${lines[@]}"; do echo "$l"; done
    if [ -s "$scratch/excerpts.txt" ]; then
      echo
      echo "=== excerpts of the failing steps' logs (all logs: logs.tgz) ==="
      cat "$scratch/excerpts.txt"
    fi
  } >"$scratch/summary.txt"
  cp "$scratch/summary.txt" "$out/summary.txt"
}

# Every log, metrics.jsonl, config.toml, scaling.md, steps.json and the summary, into OUT_DIR/logs.tgz. A log
# over 4 MiB keeps its first 2 MiB and last 1 MiB. Checkpoints and exported weights (.safetensors) stay out.
pack() {
  local list="$scratch/pack.list" f size
  {
    printf '['
    local i
    for i in "${!json[@]}"; do
      [ "$i" -gt 0 ] && printf ','
      printf '\n  %s' "${json[$i]}"
    done
    printf '\n]\n'
  } >"$scratch/steps.json"
  (cd "$scratch" && find logs runs summary.txt steps.json state.tsv -type f \
      \( -name '*.log' -o -name '*.jsonl' -o -name '*.json' -o -name '*.md' -o -name '*.txt' \
         -o -name '*.toml' -o -name '*.tsv' -o -name '*.svg' \) \
      ! -path '*/checkpoints/*' ! -name '*.safetensors' 2>/dev/null | sort) >"$list"
  while read -r f; do
    size="$(stat -c %s "$scratch/$f")"
    if [ "$size" -gt $((4 << 20)) ]; then
      { head -c $((2 << 20)) "$scratch/$f"
        printf '\n[gpu_check: %s bytes cut here]\n' "$((size - (3 << 20)))"
        tail -c $((1 << 20)) "$scratch/$f"; } >"$scratch/pack.trim" && mv "$scratch/pack.trim" "$scratch/$f"
    fi
  done <"$list"
  if tar -czf "$scratch/logs.tgz.part" -C "$scratch" -T "$list" 2>"$scratch/pack.err"; then
    cp "$scratch/logs.tgz.part" "$out/logs.tgz"
    rm -f "$scratch/logs.tgz.part"
    size="$(stat -c %s "$out/logs.tgz")"
    [ "$size" -gt $((15 << 20)) ] && echo "gpu_check: warning: logs.tgz is $size bytes, near the 16 MiB a file may have"
  else
    echo "gpu_check: packing logs.tgz failed: $(head -c 300 "$scratch/pack.err")"
  fi
}

save_state() {
  local s
  {
    for s in "${all_steps[@]}"; do
      if [ -n "${result[$s]:-}" ]; then echo "$s	${result[$s]}"
      elif [ -n "${earlier[$s]:-}" ]; then echo "$s	${earlier[$s]}"; fi
    done
  } >"$state.part" && mv "$state.part" "$state"
}

record() {  # step, label, status (PASS INFO FAIL SKIP), detail: one line, printed, kept, written at once
  local step=$1 label=$2 status=$3 detail=${4//$'\n'/; }
  while [[ "$detail" == *"; ; "* ]]; do detail=${detail//; ; /; }; done  # parts that came out empty
  detail=${detail#; }
  detail=${detail%;}
  [ ${#detail} -gt 400 ] && detail="${detail:0:400}..."
  local line
  line="$(printf '%-44s %-5s %s' "$label" "$status" "$detail")"
  lines+=("$line")
  json+=("{\"step\": $(json_str "$step"), \"result\": $(json_str "$label"), \"status\": $(json_str "$status"), \"detail\": $(json_str "$detail")}")
  echo "== $line"
  case "$status" in
    FAIL) result[$step]=FAIL; failed=1 ;;
    SKIP) [ "${result[$step]:-}" = FAIL ] || result[$step]=SKIP
          [ "$dry" -eq 1 ] || left=1 ;;
    *) [ -n "${result[$step]:-}" ] || result[$step]=PASS ;;
  esac
  write_summary
}

# A bounded excerpt (about 3 kB) of a failing step's log: compute-sanitizer's first errors (without the
# driver's and libc's frames), the first failing assertions with their expansions and INFO messages (Catch2),
# compiler and CMake errors, Python tracebacks, then the log's last lines not already shown. Printed, and kept
# for summary.txt.
excerpt() {  # log, title
  local log=$1 title=$2 text total shown=0 from sanitizer=0
  local noise='Host Frame:.*(libcuda|libcudart|libc\.so|ld-linux|__libc_start)'
  local failure='FAILED:|: error|error:|Error:|ERROR:|terminate called|what\(\):|Segmentation fault|Aborted|Traceback|CMake Error'
  [ -s "$log" ] || return 0
  total="$(wc -l <"$log")"
  grep -q '^========= ' "$log" && sanitizer=1
  text="$(
    echo "----- $title: ${log#"$scratch"/} -----"
    if [ "$sanitizer" -eq 1 ]; then
      grep -E '^========= ' "$log" | grep -vE "$noise" | head -n 40 | head -c 1500
      echo
    fi
    if grep -qE "$failure" "$log"; then
      grep -n -m 6 -B 5 -A 9 -E "$failure" "$log" | grep -vE '^[0-9]+[:-]=========' | head -c 1600
      echo
      shown=$(( $(grep -n -m 6 -E "$failure" "$log" | tail -1 | cut -d: -f1) + 9 ))
    fi
    from=$(( total - 11 ))
    [ "$from" -le "$shown" ] && from=$(( shown + 1 ))
    if [ "$from" -le "$total" ]; then
      echo "... last lines (from line $from of $total):"
      tail -n +"$from" "$log" | grep -vE "$noise" | { if [ "$sanitizer" -eq 1 ]; then grep -vE '^=========  '; else cat; fi; } |
        cut -c1-200 | tail -c 700
    fi
  )"
  text="$(printf '%s' "$text" | head -c 3200)"
  printf '%s\n' "$text"
  printf '%s\n\n' "$text" >>"$scratch/excerpts.txt"
}

deadline=$((SECONDS + ${GPU_CHECK_BUDGET_S:-560}))
budget() {  # wanted seconds -> seconds allowed: the wanted time capped by what is left before the deadline
  local left_s=$((deadline - SECONDS))
  if [ "$left_s" -lt "$1" ]; then echo "$left_s"; else echo "$1"; fi
}
out_of_time() { [ $((deadline - SECONDS)) -lt 20 ]; }

# run_cmd DIR LOG WANTED_S COMMAND...: COMMAND in DIR, output appended to LOG, under a timeout of WANTED_S
# capped by the deadline; returns its status (124: cut by the timeout). A dry run only writes the command
# line to LOG and prints it, and returns 0.
run_cmd() {
  local dir=$1 log=$2 t line
  t="$(budget "$3")"
  shift 3
  line="$(printf ' %q' "$@")"
  if [ "$dry" -eq 0 ] && [ "$t" -lt 1 ]; then  # timeout 0 would mean no limit at all
    echo "+ (cd $dir &&$line)   # not run: no time left before the deadline" >>"$log"
    return 124
  fi
  echo "+ (cd $dir &&$line)   # timeout ${t}s" >>"$log"
  if [ "$dry" -eq 1 ]; then
    echo "gpu_check: dry run, would run: (cd ${dir#"$root"/} &&$line)   # timeout ${t}s"
    return 0
  fi
  # in the background, so that a TERM sent to this script is handled at once (the trap stops the command)
  (cd "$dir" && exec timeout --kill-after=10 "$t" "$@") >>"$log" 2>&1 &
  child=$!
  local rc=0
  wait "$child" || rc=$?
  child=""
  return "$rc"
}

# conclude STEP LABEL RC LOG DETAIL [STATUS_IF_OK]: records PASS (or STATUS_IF_OK) when RC is 0, else FAIL with
# the exit status or the timeout in the detail, and prints the log's excerpt.
conclude() {
  local step=$1 label=$2 rc=$3 log=$4 detail=$5 ok=${6:-PASS} why
  if [ "$rc" -eq 0 ]; then
    record "$step" "$label" "$ok" "$detail"
    return 0
  fi
  why="rc $rc"
  [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && why="timed out (rc $rc)"
  record "$step" "$label" FAIL "$why${detail:+; $detail}"
  excerpt "$log" "$label"
  return 1
}

build_failed=0  # set when this call's build failed: binaries it did not bring up to date are not run
need_exe() {  # step, label, executable: true when it can run (always in a dry run); else records the failure
  [ "$dry" -eq 1 ] && return 0
  if [ ! -x "$3" ]; then
    record "$1" "$2" FAIL "${3#"$build"/} was not built$([ "$build_failed" -eq 1 ] && echo ': the build failed (see build above)' ||
      echo " (select the build step: GPU_CHECK_STEPS=build,$1)")"
    return 1
  fi
  # after a failed build, a binary left from an earlier build may not match the tree: ask ninja
  if [ "$build_failed" -eq 1 ] && [ -f "$build/build.ninja" ] && command -v ninja >/dev/null &&
     ! ninja -C "$build" -n "${3##*/}" 2>/dev/null | grep -q 'no work to do'; then
    record "$1" "$2" FAIL "${3#"$build"/} is out of date and the build failed before relinking it (see build above)"
    return 1
  fi
  return 0
}

dry_skip() {  # step, label [reason]: true (after recording the skip) in a dry run
  [ "$dry" -eq 1 ] || return 1
  record "$1" "$2" SKIP "dry run: ${3:-needs a GPU (command printed above)}"
}

finish() {  # the final table, the packed logs, the exit status
  trap - TERM INT
  save_state
  write_summary
  pack
  echo
  sed '/^=== excerpts/,$d' "$scratch/summary.txt"
  local rest=()
  local s
  for s in "${all_steps[@]}"; do
    if [ "${result[$s]:-}" = FAIL ] || [ "${result[$s]:-}" = SKIP ]; then rest+=("$s"); fi
  done
  if [ "$dry" -eq 0 ] && [ ${#rest[@]} -gt 0 ]; then
    echo "next call: GPU_CHECK_STEPS=left scripts/gpu_check.sh   (not passed: ${rest[*]})"
  fi
  echo "gpu_check: $out holds summary.txt and logs.tgz; logs and run outputs are in $scratch"
  if [ "${1:-}" != "" ]; then exit "$1"; fi
  if [ "$failed" -ne 0 ]; then exit 1; fi
  if [ "$left" -ne 0 ]; then exit 3; fi
  exit 0
}
child=""         # the command run_cmd is waiting for
current_step=""  # the step under way
# shellcheck disable=SC2317  # reached through the trap
on_signal() {
  trap - TERM INT
  [ -n "$child" ] && kill -TERM "$child" 2>/dev/null
  echo "gpu_check: interrupted; packing what finished"
  [ -n "$current_step" ] && record "$current_step" "$current_step" FAIL "interrupted by a signal (the machine's time limit?)"
  failed=1
  finish 130
}
trap on_signal TERM INT

setup_fail() {  # message: the check cannot start
  record setup "setup" FAIL "$1"
  finish 2
}

# --- the steps to run ---------------------------------------------------------------------------------------
if [ -f "$state" ]; then
  while IFS=$'\t' read -r s st; do [ -n "$s" ] && earlier[$s]=$st; done <"$state"
fi
declare -A want=()
selection="${GPU_CHECK_STEPS:-all}"
bad=""
read -ra tokens <<<"${selection//,/ }"
for tok in "${tokens[@]}"; do
  case "$tok" in
    all) for s in "${all_steps[@]}"; do want[$s]=1; done ;;
    left | failed)
      want[build]=1
      if [ ! -f "$state" ]; then
        echo "gpu_check: GPU_CHECK_STEPS=$tok: no earlier call recorded in $state, so every step runs"
        for s in "${all_steps[@]}"; do want[$s]=1; done
        continue
      fi
      for s in "${all_steps[@]}"; do
        if [ "$tok" = left ] && [ "${earlier[$s]:-}" != PASS ]; then want[$s]=1; fi
        if [ "$tok" = failed ] && [ "${earlier[$s]:-}" = FAIL ]; then want[$s]=1; fi
      done ;;
    *)
      if [[ " ${all_steps[*]} " == *" $tok "* ]]; then want[$tok]=1; else bad+=" $tok"; fi ;;
  esac
done
steps=()
for s in "${all_steps[@]}"; do [ -n "${want[$s]:-}" ] && steps+=("$s"); done
header="=== gpu_check summary, $started$([ "$dry" -eq 1 ] && echo ', DRY RUN'): steps ${steps[*]:-none} ==="
if [ -n "$bad" ]; then
  setup_fail "GPU_CHECK_STEPS='$selection': unknown step(s):$bad (steps: ${all_steps[*]}; or all, left, failed)"
fi
[ ${#steps[@]} -eq 0 ] && setup_fail "GPU_CHECK_STEPS='$selection' selects no step (steps: ${all_steps[*]}; or all, left, failed)"
selected() { [ -n "${want[$1]:-}" ]; }

# --- toolchain and GPU --------------------------------------------------------------------------------------
nvcc_bin="$(command -v nvcc || true)"
[ -z "$nvcc_bin" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc_bin=/usr/local/cuda/bin/nvcc
if [ -n "$nvcc_bin" ]; then
  PATH="$(dirname "$nvcc_bin"):$PATH"
  export PATH
  nvcc_version="$("$nvcc_bin" --version 2>/dev/null | grep -o 'release [0-9.]*' | head -1)"
elif [ "$dry" -eq 0 ] && selected build; then
  setup_fail "no nvcc on PATH or in /usr/local/cuda/bin: this check builds the CUDA backend"
fi
gpu="$(nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader 2>/dev/null | head -1)"
arch="$(echo "$gpu" | awk -F', ' '{print $2}' | tr -d '.')"
[ -z "$arch" ] && arch="80;90"
has_gpu=0
[ -n "$gpu" ] && has_gpu=1
tree="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo 'no git')"
[ "$tree" != "no git" ] && [ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ] && tree+=" + changes"
header="=== gpu_check summary, $started$([ "$dry" -eq 1 ] && echo ', DRY RUN'), ${gpu:-no GPU visible}, tree $tree: steps ${steps[*]} ==="

# --- dependencies: the system's, else .carry/ ---------------------------------------------------------------------
dep_headers=("eigen3/Eigen/Core|Eigen (libeigen3-dev)" "catch2/catch.hpp|Catch2 v2 (catch2)"
             "nlohmann/json.hpp|nlohmann-json (nlohmann-json3-dev)" "zlib.h|zlib (zlib1g-dev)"
             "CLI/CLI.hpp|CLI11 (libcli11-dev)" "toml++/toml.h|toml++ (libtomlplusplus-dev)")
include_dirs=(/usr/include /usr/local/include)
IFS=: read -ra prefixes <<<"${CMAKE_PREFIX_PATH:-}"
for p in "${prefixes[@]}"; do [ -n "$p" ] && include_dirs+=("$p/include"); done
[ -d "$carry" ] && include_dirs+=("$carry/include")
missing=()
for entry in "${dep_headers[@]}"; do
  found=0
  for d in "${include_dirs[@]}"; do [ -f "$d/${entry%%|*}" ] && found=1 && break; done
  [ $found -eq 0 ] && missing+=("${entry#*|}")
done
if [ ${#missing[@]} -gt 0 ]; then
  list="$(printf '%s, ' "${missing[@]}")"
  list="${list%, }"
  if [ -d "$carry" ]; then
    setup_fail "neither this machine nor .carry/ has $list: run 'scripts/gpu_check.sh prepare-carry' again on a machine with scripts/setup.sh's packages"
  else
    setup_fail ".carry/ is missing and this machine lacks $list: run 'scripts/gpu_check.sh prepare-carry' on a machine with scripts/setup.sh's packages, then carry .carry/ with the tree (the device tool: carry [\".carry\"])"
  fi
fi

# --- cuDNN and NCCL -------------------------------------------------------------------------------------------
site_nvidia="$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0])' 2>/dev/null || true)"
find_lib() {  # dir, stem -> newest lib<stem>.so* in dir
  find "$1" -maxdepth 1 -name "lib$2.so*" 2>/dev/null | sort -V | tail -1
}
cmake_args=(-DBYOL_CUDA=ON -DBYOL_OPENBLAS=OFF -DBYOL_BENCHMARKS=ON -DBYOL_TESTS=ON "-DCMAKE_CUDA_ARCHITECTURES=$arch")
[ -n "$nvcc_bin" ] && cmake_args+=("-DCMAKE_CUDA_COMPILER=$nvcc_bin")
ld_dirs=()
found_libs=""
for pkg in cudnn nccl; do
  upper="$(echo "$pkg" | tr '[:lower:]' '[:upper:]')"
  root_var="${upper}_ROOT"
  dir="${!root_var:-}"
  [ -z "$dir" ] && [ -n "$site_nvidia" ] && [ -d "$site_nvidia/$pkg" ] && dir="$site_nvidia/$pkg"
  lib=""
  if [ -n "$dir" ] && [ -d "$dir/include" ]; then
    lib="$(find_lib "$dir/lib" "$pkg")"
    [ -z "$lib" ] && lib="$(find_lib "$dir/lib64" "$pkg")"
  fi
  if [ -n "$lib" ]; then
    # pip wheels ship only lib<name>.so.<major>: hand CMake the file itself
    cmake_args+=("-DBYOL_${upper}_INCLUDE=$dir/include" "-DBYOL_${upper}_LIB=$lib")
    ld_dirs+=("$(dirname "$lib")")
    found_libs+="$pkg ${lib##*/}; "
  else
    found_libs+="$pkg: not given (${root_var}), CMake searches the toolkit; "
  fi
done
# Only NVIDIA's library folders go on LD_LIBRARY_PATH; the carried libraries are found through the build
# tree's RPATH (and zlib is carried static), so no carried copy shadows a system library.
if [ ${#ld_dirs[@]} -gt 0 ]; then
  LD_LIBRARY_PATH="$(IFS=:; echo "${ld_dirs[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LD_LIBRARY_PATH
fi
[ -d "$carry" ] && cmake_args+=("-DCMAKE_PREFIX_PATH=$carry")
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [ "$dry" -eq 0 ] && selected build && ! command -v cmake >/dev/null; then
  setup_fail "no cmake on PATH"
fi
record setup "setup" INFO "nvcc ${nvcc_version:-not found}; GPU ${gpu:-none visible}; ${found_libs}deps from $([ -d "$carry" ] && echo "the system and .carry/" || echo "the system")"

tests="$build/tests/byol_tests"
pretrain="$build/apps/byol-pretrain"
bench="$build/benchmarks/byol_step_bench"

# --- the steps ----------------------------------------------------------------------------------------------------
step_build() {
  local targets=() t0=$SECONDS rc detail
  selected cuda_tests || selected memcheck || selected initcheck || selected nccl && targets+=(byol_tests)
  selected smoke || selected learn || selected ablate && targets+=(byol-pretrain)
  selected ablate && targets+=(byol-eval)
  selected labs && targets+=("${labs[@]}")
  selected bench && targets+=(byol_step_bench)
  [ ${#targets[@]} -eq 0 ] && targets=(byol_tests byol-pretrain byol_step_bench "${labs[@]}")
  echo "gpu_check: configuring in $build"
  run_cmd "$root" "$logs/configure.log" 120 cmake -S "$root" -B "$build" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=Release "${cmake_args[@]}"
  rc=$?
  if [ "$dry" -eq 0 ] && ! conclude build "build: configure" "$rc" "$logs/configure.log" \
       "$(grep -E 'byol: (CUDA|cuDNN|NCCL):' "$logs/configure.log" | sed 's/.*byol: //' | tr '\n' ';')"; then
    build_failed=1
    return
  fi
  echo "gpu_check: building ${targets[*]} with $(nproc 2>/dev/null || echo 8) jobs"
  # Keep going past a target that fails to compile, so that one broken lab or test file leaves the other
  # binaries built and their steps running (need_exe asks ninja whether a binary is current).
  local keep_going=(-- -k)
  [ ${#generator[@]} -gt 0 ] && keep_going=(-- -k 0)
  run_cmd "$root" "$logs/build.log" "${GPU_CHECK_BUILD_S:-420}" cmake --build "$build" -j "$(nproc 2>/dev/null || echo 8)" \
    --target "${targets[@]}" "${keep_going[@]}"
  rc=$?
  dry_skip build "build" "nothing is configured or built (commands printed above)" && return
  detail="$(grep -ci 'warning' "$logs/build.log") warning lines; $((SECONDS - t0)) s"
  [ "$rc" -eq 124 ] && detail+="; the build folder is kept: a second call (GPU_CHECK_STEPS=left) continues it"
  conclude build "build" "$rc" "$logs/build.log" "$detail" || build_failed=1
}

step_cuda_tests() {
  local log="$logs/cuda_tests.log" t0=$SECONDS rc
  need_exe cuda_tests "[cuda] tests" "$tests" || return
  run_cmd "$build/tests" "$log" 240 "$tests" "[cuda]~[nccl]" --durations yes
  rc=$?
  dry_skip cuda_tests "[cuda] tests (no NCCL)" && return
  if [ "$rc" -eq 77 ]; then
    record cuda_tests "[cuda] tests (no NCCL)" SKIP "$(grep -m1 SKIPPED "$log")"
    return
  fi
  conclude cuda_tests "[cuda] tests (no NCCL)" "$rc" "$log" \
    "$(grep -E '^(All tests passed|test cases:)' "$log" | tail -1); $((SECONDS - t0)) s"
  # The figures the tests print for this log (TF32 on vs off, graph vs eager, bf16 vs the CPU, the
  # augmentation kernel against the CPU), any convolution cuDNN had no bf16 algorithm for (the float32
  # fallback ran), and any refused capture, into the summary.
  local line
  while IFS= read -r line; do
    record cuda_tests "[cuda] tests: printed" INFO "$line"
  done < <(grep -E '^\[cuda (readiness|graph|bf16)\]|found no bf16 algorithm|^augment kernel|capturing the step failed' \
    "$log" | sort -u | head -32)
}

sanitizer_bin() {
  local s
  s="$(command -v compute-sanitizer || true)"
  [ -z "$s" ] && [ -n "$nvcc_bin" ] && [ -x "$(dirname "$nvcc_bin")/compute-sanitizer" ] && s="$(dirname "$nvcc_bin")/compute-sanitizer"
  echo "$s"
}

step_sanitizer() {  # memcheck | initcheck
  local tool=$1 log="$logs/$1.log" t0=$SECONDS rc sanitizer spec="${GPU_CHECK_SANITIZE_SPEC:-[cuda-kernels],[augment]}"
  [ "$tool" = initcheck ] && spec="${GPU_CHECK_INITCHECK_SPEC:-[cuda-kernels],[cuda-step]}"
  local label="$tool $spec" extra=()
  need_exe "$tool" "$label" "$tests" || return
  sanitizer="$(sanitizer_bin)"
  if [ -z "$sanitizer" ]; then
    [ "$dry" -eq 1 ] && sanitizer=compute-sanitizer
    [ "$dry" -eq 1 ] || { record "$tool" "$label" FAIL "compute-sanitizer not found (PATH, next to nvcc)"; return; }
  fi
  [ "$tool" = memcheck ] && extra=(--leak-check no)
  run_cmd "$build/tests" "$log" 180 "$sanitizer" --tool "$tool" --error-exitcode 99 --print-limit 50 "${extra[@]}" \
    "$tests" "$spec"
  rc=$?
  dry_skip "$tool" "$label" && return
  if grep -qE 'Device not supported|not supported on this (device|platform)' "$log"; then
    record "$tool" "$label" SKIP "compute-sanitizer refused this machine (seen on gVisor): $(grep -m1 -E 'not supported' "$log" | cut -c1-160)"
    return
  fi
  conclude "$tool" "$label" "$rc" "$log" \
    "$(grep -E 'ERROR SUMMARY' "$log" | tail -1 | sed 's/^=* *//'); $((SECONDS - t0)) s"
}

step_nccl() {
  local log="$logs/nccl.log" t0=$SECONDS rc
  need_exe nccl "NCCL [nccl], one rank and twin ranks" "$tests" || return
  run_cmd "$build/tests" "$log" "${GPU_CHECK_NCCL_S:-90}" env NCCL_DEBUG=WARN "$tests" "[nccl]" --durations yes
  rc=$?
  dry_skip nccl "NCCL [nccl], one rank and twin ranks" && return
  if [ "$rc" -eq 0 ] && grep -q "skipped: this build has no NCCL" "$log"; then
    record nccl "NCCL [nccl], one rank and twin ranks" SKIP "this build has no NCCL (NCCL_ROOT, or python3's nvidia-nccl wheel)"
    return
  fi
  conclude nccl "NCCL [nccl], one rank and twin ranks" "$rc" "$log" \
    "$(grep -E '^(All tests passed|test cases:)' "$log" | tail -1); $((SECONDS - t0)) s"
  # The CUDA graph over twin ranks ([cuda][graph][nccl]): graph vs eager per section, and the refusals the
  # tests provoke (expected: one refused, one failed "on another rank", one thrown mid-backward).
  local line
  while IFS= read -r line; do
    record nccl "NCCL [nccl]: printed" INFO "$line"
  done < <(grep -E '^\[cuda graph\]|capturing the step failed|error: NCCL request' "$log" | sort -u | head -16)
}

# byol-pretrain on the GPU: a few steps on synthetic data (no download), a stop and a resume. The run folder
# (checkpoints, exported encoder) stays in the scratch folder; metrics.jsonl and config.toml go into logs.tgz.
step_smoke() {
  local log="$logs/pretrain_smoke.log" smoke="$runs/pretrain_smoke" t0=$SECONDS rc1 rc2 ok=0
  local label="byol-pretrain GPU smoke (stop, resume)"
  need_exe smoke "$label" "$pretrain" || return
  local args=(--set data.train=synthetic:1024:10:32 --set data.side=32 --set data.normalization=none
              --set data.workers=4 --set data.knn_train=synthetic:512:10:32 --set data.knn_test=synthetic:256:10:32:1
              --set model.stem=cifar --set train.batch_size=128 --set train.epochs=2 --set train.warmup_epochs=1
              --set run.device=cuda --set run.log_every=2 --set run.checkpoint_every=4 --set "run.out=$smoke")
  run_cmd "$root" "$log" 120 "$pretrain" "${args[@]}" --set run.max_steps=6
  rc1=$?
  # A first half that hung (or ran out of time) says enough: the resume and the variants would hang too.
  if [ "$rc1" -ne 0 ] && { out_of_time || [ "$rc1" -eq 124 ] || [ "$rc1" -eq 137 ]; }; then
    conclude smoke "$label" "$rc1" "$log" "the first half did not finish"
    return
  fi
  run_cmd "$root" "$log" 120 "$pretrain" "${args[@]}" --resume
  rc2=$?
  if [ "$dry" -eq 1 ]; then  # the layout a real run leaves, so that the packing is tested against it
    mkdir -p "$smoke/checkpoints"
    echo "dry run: stands for a checkpoint, which logs.tgz must leave out" >"$smoke/checkpoints/step_00000016.safetensors"
    echo "dry run: stands for the exported encoder" >"$smoke/encoder.safetensors"
    echo '{"dry_run": true, "note": "byol-pretrain writes one object per logged step and kNN evaluation"}' >"$smoke/metrics.jsonl"
    echo '# dry run: byol-pretrain writes the effective configuration here' >"$smoke/config.toml"
  fi
  dry_skip smoke "$label" && { smoke_variants "${args[@]}"; return; }
  [ "$rc1" -eq 0 ] && [ "$rc2" -eq 0 ] && [ -f "$smoke/encoder.safetensors" ] && grep -q "on cuda" "$log" &&
    grep -q '"knn_top1"' "$smoke/metrics.jsonl" 2>/dev/null && ok=1
  local detail
  detail="rc $rc1/$rc2; $(grep -E '^done:|error' "$log" | tail -1 | cut -c1-200); $((SECONDS - t0)) s"
  if [ $ok -eq 1 ]; then
    record smoke "$label" PASS "$detail"
  else
    [ "$rc1" -eq 0 ] && [ "$rc2" -eq 0 ] &&
      detail+="; missing: $([ -f "$smoke/encoder.safetensors" ] || echo 'encoder.safetensors ')$(grep -q 'on cuda' "$log" || echo "'on cuda' in the log ")$(grep -qs '"knn_top1"' "$smoke/metrics.jsonl" || echo 'knn_top1 in metrics.jsonl')"
    record smoke "$label" FAIL "$detail"
    excerpt "$log" "$label"
  fi
  smoke_variants "${args[@]}"
}

# The smoke run's first 6 steps again in a variant whose losses must follow the eager, CPU-augmented run's
# (same seed, same drawn parameters):
#  - data.augment_on = gpu (issue 18): the views differ by float rounding only, so the logged losses agree to
#    about 1e-3 over 6 steps (bound 1e-2), and the banner must say the views are made on the GPU;
#  - train.cuda_graph = true (issue 18): two eager steps, the capture, then replays of the same kernels in the
#    same order; the losses agree to rounding noise, but each process picks cuDNN's algorithms by timing them
#    (bound 1e-2), and its log must show the graph was on and hold no "capturing the step failed" (a
#    refused capture goes on eagerly, with losses that would agree);
#  - train.precision = bf16 (issue 17): bf16 activations on the GPU, the banner must say so (bound 5e-2).
smoke_variant() {  # name, label, bound, text its log must hold ("" for none), the smoke run's arguments, --,
  # the variant's settings
  local name=$1 label=$2 bound=$3 must_print=$4
  shift 4
  local args=() extra=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do args+=("$1"); shift; done
  shift
  extra=("$@")
  local log="$logs/pretrain_smoke_$name.log" run_out="$runs/pretrain_smoke_$name" t0=$SECONDS rc cmp
  if out_of_time; then record smoke "$label" SKIP "out of time budget"; return; fi
  if [ "$dry" -eq 0 ] && ! grep -qs '"loss"' "$runs/pretrain_smoke/metrics.jsonl"; then
    record smoke "$label" SKIP "the eager smoke run logged no loss to compare with"
    return
  fi
  run_cmd "$root" "$log" 90 "$pretrain" "${args[@]}" "${extra[@]}" --set "run.out=$run_out" --set run.max_steps=6
  rc=$?
  dry_skip smoke "$label" && return
  local ok=0
  cmp="$(python3 - "$runs/pretrain_smoke/metrics.jsonl" "$run_out/metrics.jsonl" "$bound" 2>&1 <<'PY'
import json, sys
def losses(path):
    out = {}
    for line in open(path):
        r = json.loads(line)
        if "loss" in r and "step" in r and r["step"] <= 6:
            out[r["step"]] = r["loss"]
    return out
a, b = losses(sys.argv[1]), losses(sys.argv[2])
common = sorted(set(a) & set(b))
if not common:
    print("no logged step in common"); sys.exit(1)
worst = max(abs(a[s] - b[s]) for s in common)
print("steps %s: loss eager/cpu-augmented %s, this run %s; max |diff| %.2e (bound %s)" % (
    common, [round(a[s], 5) for s in common], [round(b[s], 5) for s in common], worst, sys.argv[3]))
sys.exit(0 if worst < float(sys.argv[3]) else 1)
PY
)" && ok=1
  # the run must also show that it took the path it names (the banner's line for it)
  if [ -n "$must_print" ] && ! grep -qF "$must_print" "$log"; then
    ok=0
    cmp+="; the log lacks '$must_print'"
  fi
  # a refused capture goes on eagerly (byol/learner.cpp): the losses would still agree
  if grep -qF "capturing the step failed" "$log"; then
    ok=0
    cmp+="; the capture failed: $(grep -A1 -F 'capturing the step failed' "$log" | tail -1 | cut -c1-300)"
  fi
  if [ "$rc" -eq 0 ] && [ "$ok" -eq 1 ]; then
    record smoke "$label" PASS "$cmp; $((SECONDS - t0)) s"
  else
    record smoke "$label" FAIL "rc $rc; ${cmp:-no comparison}; $(grep -E 'error' "$log" | tail -1 | cut -c1-200)"
    excerpt "$log" "$label"
  fi
}

smoke_variants() {  # the smoke run's arguments
  smoke_variant gpu_augment "byol-pretrain GPU smoke, data.augment_on=gpu" 1e-2 "data.augment_on: gpu" \
    "$@" -- --set data.augment_on=gpu
  # kNN every 4 steps: the eager feature extraction between replays, while the graph holds its memory. The
  # bound is the augment variant's: the two processes time cuDNN's algorithms separately and may pick
  # different ones (TF32 on), so the losses can differ by more than one process's rounding.
  smoke_variant cuda_graph "byol-pretrain GPU smoke, train.cuda_graph=true" 1e-2 "train.cuda_graph: the step runs" \
    "$@" -- --set train.cuda_graph=true --set run.knn_every=4
  # bf16 with bf16 activations (issue 17): every stored activation and gradient rounded to bf16 (2^-9
  # relative), so the losses follow the float32 run less closely: on the CPU, the tiny network's step moved
  # its loss by 0.6 % (test_byol.cpp); bound 5e-2 on losses near 4.
  smoke_variant bf16 "byol-pretrain GPU smoke, train.precision=bf16" 5e-2 "bf16 activations" \
    "$@" -- --set train.precision=bf16
}

# The learning-quality comparison of issue 12 on this GPU (scripts/gpu_learning_check.sh): byol-pretrain and
# the PyTorch reference train the cifar10-short recipe at each seed, all runs at once; each run's kNN gain.
step_learn() {
  local label="learning check, cifar10-short" log="$logs/learning.log" t0=$SECONDS rc t detail
  local tarball="${CIFAR10_TAR:-$carry/cifar10.tar.gz}"
  need_exe learn "$label" "$pretrain" || return
  if [ "$dry" -eq 0 ] && [ ! -d "$root/data-local/cifar10/train" ] && [ ! -f "$tarball" ]; then
    record learn "$label" SKIP "no CIFAR-10: neither data-local/cifar10/ nor $tarball (prepare-carry copies ../shared/data/cifar10.tar.gz)"
    return
  fi
  if [ "$dry" -eq 0 ] && ! python3 -c 'import torch, torchvision, PIL, sys; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    record learn "$label" SKIP "python3 has no torch/torchvision with CUDA for the reference"
    return
  fi
  # Cut short, the learning check reports nothing (its runs print their figures at the end): it runs only
  # with its whole time left, and otherwise waits for a later call (GPU_CHECK_STEPS=left).
  t="${GPU_CHECK_LEARN_S:-300}"
  if [ "$dry" -eq 0 ] && [ $((deadline - SECONDS)) -lt $((t + 30)) ]; then
    record learn "$label" SKIP "needs $((t + 30)) s, $((deadline - SECONDS)) s left (GPU_CHECK_STEPS=learn in a call of its own)"
    return
  fi
  # shellcheck disable=SC2086  # the seeds are a word list
  run_cmd "$root" "$log" "$((t + 30))" env GPU_LEARN_S="$t" CIFAR10_TAR="$tarball" GPU_LEARN_WORK="$runs/learning" \
    "$root/scripts/gpu_learning_check.sh" "$pretrain" "$logs/learning" ${GPU_CHECK_LEARN_SEEDS:-0 1}
  rc=$?
  dry_skip learn "$label" && return
  detail="$(grep -hE '^(byol.cpp seed|reference seed|byol.cpp: mean|reference: mean)' "$log" | tr '\n' ';')"
  conclude learn "$label" "$rc" "$log" "${detail}$((SECONDS - t0)) s" INFO
}

# The paper's ablations at GPU scale (scripts/ablate.sh, configs/cifar10_gpu.toml): each named row pretrained,
# scored by kNN and a linear probe; the rows finished in the time allowed are tabulated.
step_ablate() {
  local label="ablations, cifar10_gpu" log="$logs/ablate.log" t0=$SECONDS rc t name done_rows=""
  local tarball="${CIFAR10_TAR:-$carry/cifar10.tar.gz}"
  local -a names
  local ablations="$scratch/ablations"  # outside runs/, which each call empties: finished rows stay
  read -r -a names <<<"${GPU_CHECK_ABLATIONS:-byol simclr no_predictor tau_0}"
  need_exe ablate "$label" "$pretrain" || return
  need_exe ablate "$label" "$build/apps/byol-eval" || return
  if [ "$dry" -eq 0 ] && [ ! -d "$root/data-local/cifar10/train" ]; then
    if [ ! -f "$tarball" ]; then
      record ablate "$label" SKIP "no CIFAR-10: neither data-local/cifar10/ nor $tarball (prepare-carry copies ../shared/data/cifar10.tar.gz)"
      return
    fi
    mkdir -p "$root/data-local" && tar xzf "$tarball" -C "$root/data-local" ||
      { record ablate "$label" FAIL "cannot unpack $tarball"; return; }
  fi
  if [ "$dry" -eq 0 ] && [ $((deadline - SECONDS)) -lt 240 ]; then  # about one row's pretraining and evaluation
    record ablate "$label" SKIP "needs at least 240 s for a row, $((deadline - SECONDS)) s left (GPU_CHECK_STEPS=ablate in a call of its own)"
    return
  fi
  t="$(budget "${GPU_CHECK_ABLATE_S:-300}")"
  run_cmd "$root" "$log" "$t" env BUILD="$build" "$root/scripts/ablate.sh" "$root/configs/cifar10_gpu.toml" \
    "$ablations" "${names[@]}"
  rc=$?
  dry_skip ablate "$label" && return
  for name in "${names[@]}"; do
    [ -f "$ablations/$name/linear.json" ] && done_rows+="$name "
    cp "$ablations/$name/metrics.jsonl" "$logs/ablation_$name.metrics.jsonl" 2>/dev/null
  done
  if [ "$rc" -ne 0 ] && [ -n "$done_rows" ]; then
    # cut off: tabulate the rows that finished (ablate.sh only tabulates, they are not run again)
    # shellcheck disable=SC2086  # the finished rows are a word list
    (cd "$root" && BUILD="$build" scripts/ablate.sh configs/cifar10_gpu.toml "$ablations" $done_rows) >>"$log" 2>&1
  fi
  cp "$ablations/ablations.md" "$logs/ablations.md" 2>/dev/null
  if [ -z "$done_rows" ]; then
    conclude ablate "$label" "$([ "$rc" -eq 0 ] && echo 1 || echo "$rc")" "$log" "no row finished; $((SECONDS - t0)) s"
  else
    record ablate "$label" INFO "finished: ${done_rows% }$([ "$rc" -ne 0 ] && echo " (rc $rc: the others were cut off or failed)"); $(grep -E '^\| `' "$ablations/ablations.md" | awk -F'|' '{gsub(/ /, "", $2); printf "%s kNN %s linear %s; ", $2, $5, $6}')$((SECONDS - t0)) s"
    # rows left over: the step has not passed, so GPU_CHECK_STEPS=left runs it again (the finished rows are
    # kept in $ablations and not run again)
    [ "$rc" -ne 0 ] && record ablate "$label (rows left)" SKIP "cut off or failed after ${done_rows% }; a later call goes on"
  fi
}

step_labs() {
  local lab exe log rc t0
  for lab in "${labs[@]}"; do
    if out_of_time; then record labs "lab $lab" SKIP "out of time budget"; continue; fi
    exe="$build/benchmarks/$lab"
    log="$logs/$lab.log"
    need_exe labs "lab $lab" "$exe" || continue
    t0=$SECONDS
    # 90 s: elementwise_lab and batch_norm_lab validate two versions of their kernels (2026-12-05)
    run_cmd "$root" "$log" 90 "$exe" --json "$logs/$lab.json"  # the figures as JSON too (in logs.tgz)
    rc=$?
    dry_skip labs "lab $lab" && continue
    conclude labs "lab $lab" "$rc" "$log" \
      "$(grep -E '^v[0-9]+ ' "$log" | sed -E 's/ +/ /g; s/ \(min [^)]*\)//; s/ of the copy bandwidth//; s/$/; /' | tr -d '\n')$((SECONDS - t0)) s"
  done
}

images_per_s() {  # the last "N images/s" figure of a log, or nothing
  grep -oE '[0-9]+(\.[0-9]+)? images/s' "$1" 2>/dev/null | tail -1 | cut -d' ' -f1
}

# One summary row per network: its step's forms against the eager float32 step; the faster float32 form
# (eager or graph) against PyTorch eager (float32, TF32), and the fastest of all against PyTorch AMP bf16
# (issue 17's target: ResNet-50 bf16 >= 1.8x our TF32 step; issue 18's: >= 1.5x PyTorch AMP, ResNet-18
# >= 2x PyTorch eager). Only the figures that were measured.
bench_ratios() {
  local name=$1 eager graph bf16 bf16g torch amp best="" best32="" out="" f
  eager=$(images_per_s "$logs/step_$name.log")
  graph=$(images_per_s "$logs/step_${name}_graph.log")
  bf16=$(images_per_s "$logs/step_${name}_bf16.log")
  bf16g=$(images_per_s "$logs/step_${name}_bf16_graph.log")
  torch=$(images_per_s "$logs/step_${name}_torch.log")
  amp=$(images_per_s "$logs/step_${name}_torch_amp.log")
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
  for f in "$eager" "$graph" "$bf16" "$bf16g"; do
    [ -n "$f" ] && { [ -z "$best" ] || awk -v a="$f" -v b="$best" 'BEGIN { exit !(a > b) }'; } && best=$f
  done
  for f in "$eager" "$graph"; do
    [ -n "$f" ] && { [ -z "$best32" ] || awk -v a="$f" -v b="$best32" 'BEGIN { exit !(a > b) }'; } && best32=$f
  done
  if [ -n "$eager" ]; then
    [ -n "$graph" ] && out+="graph/eager $(ratio "$graph" "$eager"); "
    [ -n "$bf16" ] && out+="bf16/eager (TF32) $(ratio "$bf16" "$eager"); "
    [ -n "$bf16g" ] && out+="bf16+graph/eager $(ratio "$bf16g" "$eager"); "
  fi
  [ -n "$best32" ] && [ -n "$torch" ] &&
    out+="best float32 byol.cpp ($best32 images/s)/PyTorch eager $(ratio "$best32" "$torch"); "
  [ -n "$best" ] && [ -n "$amp" ] && out+="best byol.cpp ($best images/s)/PyTorch AMP bf16 $(ratio "$best" "$amp"); "
  [ -n "$out" ] && record bench "step $name ratios" INFO "${out%; }"
  return 0
}

step_bench() {
  local torch_ok=0 entry name ours theirs log rc suffix
  if [ "$dry" -eq 1 ]; then
    echo "gpu_check: dry run, would check: python3 -c 'import torch, torchvision; torch.cuda.is_available()'"
  elif python3 -c 'import torch, torchvision, sys; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    torch_ok=1
  fi
  # name | byol_step_bench arguments | byol_step_torch.py arguments (same model, stem, side and batch).
  # ResNet-18 CIFAR at batch 512, the size of issue 18's targets (the runs of 2026-12-04 used 256);
  # ResNet-50 at 224 px at batch 128, which leaves float32 room on any 80 GB card.
  local step_benches=(
    "resnet18_cifar_b512|512 20 64 32 4096 cifar --depth 18|512 20 1 --depth 18 --stem cifar --side 32"
    "resnet50_imagenet224_b128|128 10 64 224 4096 imagenet --depth 50|128 10 1 --depth 50 --stem imagenet --side 224"
  )
  for entry in "${step_benches[@]}"; do
    IFS='|' read -r name ours theirs <<<"$entry"
    if out_of_time; then record bench "step $name" SKIP "out of time budget"; continue; fi
    need_exe bench "step $name (byol.cpp)" "$bench" || continue
    log="$logs/step_$name.log"
    # shellcheck disable=SC2086  # the argument lists above are word lists
    run_cmd "$root" "$log" 120 "$bench" $ours --device cuda --phases --json "$logs/step_$name.json"
    rc=$?
    if ! dry_skip bench "step $name (byol.cpp)"; then
      conclude bench "step $name (byol.cpp)" "$rc" "$log" "$(grep 'images/s' "$log" | tail -1)" INFO
      if [ "$rc" -eq 0 ]; then record bench "step $name phases" INFO "$(grep 'phases per step' "$log" | tail -1)"; fi
    fi
    # the same step replayed as one CUDA graph (train.cuda_graph, issue 18), in bf16 with bf16 activations
    # (train.precision = "bf16", issue 17), and both
    local form flags what
    for form in "graph|--cuda-graph|CUDA graph" "bf16|--precision bf16|bf16" \
                "bf16_graph|--precision bf16 --cuda-graph|bf16, CUDA graph"; do
      IFS='|' read -r suffix flags what <<<"$form"
      if out_of_time; then record bench "step $name (byol.cpp, $what)" SKIP "out of time budget"; continue; fi
      log="$logs/step_${name}_$suffix.log"
      # shellcheck disable=SC2086
      run_cmd "$root" "$log" 120 "$bench" $ours --device cuda $flags --phases --json "$logs/step_${name}_$suffix.json"
      rc=$?
      dry_skip bench "step $name (byol.cpp, $what)" ||
        conclude bench "step $name (byol.cpp, $what)" "$rc" "$log" "$(grep 'images/s' "$log" | tail -1)" INFO
    done
    if [ "$dry" -eq 0 ] && [ $torch_ok -eq 0 ]; then
      record bench "step $name (PyTorch)" INFO "skipped: python3 has no torch/torchvision with CUDA"
      bench_ratios "$name"
      continue
    fi
    # PyTorch eager fp32 (TF32, channels_last) and AMP bf16 (channels_last), issue 18's two references
    local variant label
    for variant in "" "--amp bf16"; do
      label="PyTorch${variant:+ AMP bf16}"
      suffix="${variant:+_amp}"
      if out_of_time; then record bench "step $name ($label)" SKIP "out of time budget"; continue; fi
      log="$logs/step_${name}_torch$suffix.log"
      # shellcheck disable=SC2086
      run_cmd "$root" "$log" 180 python3 "$root/benchmarks/reference/byol_step_torch.py" $theirs --device cuda $variant
      rc=$?
      dry_skip bench "step $name ($label)" && continue
      conclude bench "step $name ($label)" "$rc" "$log" "$(tail -1 "$log")" INFO
    done
    [ "$dry" -eq 1 ] || bench_ratios "$name"
  done
  # real-loader inputs (issue 18): ResNet-50 at 224 px fed by the loader from 256 px synthetic sources,
  # augmented on the CPU workers or by the CUDA kernel (data.augment_on); the "data" phase is the wait
  local where
  for where in cpu gpu; do
    name="resnet50_imagenet224_b128_loader_$where"
    if out_of_time; then record bench "step $name" SKIP "out of time budget"; continue; fi
    need_exe bench "step $name" "$bench" || continue
    log="$logs/step_$name.log"
    run_cmd "$root" "$log" 120 "$bench" 128 5 64 224 4096 imagenet --depth 50 --device cuda --phases \
      --data synthetic:2048:10:256 --workers "$(nproc)" --augment-on "$where" --json "$logs/step_$name.json"
    rc=$?
    dry_skip bench "step $name" && continue
    conclude bench "step $name" "$rc" "$log" "$(grep 'images/s' "$log" | tail -1); $(grep 'phases per step' "$log" | tail -1)" INFO
  done
  # the multi-GPU scaling model (docs/scaling.md) from the measured ResNet-50 step
  local r50="$logs/step_resnet50_imagenet224_b128.log"
  if [ "$dry" -eq 1 ]; then
    run_cmd "$root" "$logs/scaling.log" 30 python3 "$root/scripts/scaling_model.py" --from-log "$r50"
    record bench "scaling model (docs/scaling.md)" SKIP "dry run: needs the measured ResNet-50 rate"
  elif grep -q "ResNet-50 .* images/s" "$r50" 2>/dev/null; then
    timeout 30 python3 "$root/scripts/scaling_model.py" --from-log "$r50" >"$logs/scaling.md" 2>&1
    rc=$?
    conclude bench "scaling model (docs/scaling.md)" "$rc" "$logs/scaling.md" \
      "$(grep -E '^\| 8 \||^\| 64 \|' "$logs/scaling.md" | sed -E 's/ +/ /g' | tr '\n' ';')" INFO
  elif grep -qs "not run: no time left" "$r50" || [ ! -f "$r50" ]; then
    record bench "scaling model (docs/scaling.md)" SKIP "the ResNet-50 step did not run (out of time budget)"
  else
    record bench "scaling model (docs/scaling.md)" FAIL "no ResNet-50 step rate measured"
  fi
}

# --- run them, in order of value -----------------------------------------------------------------------------------
[ "$dry" -eq 1 ] && echo "gpu_check: dry run: GPU steps are reported as skipped and their commands printed, nothing is built"
selected build || echo "gpu_check: the build step is not selected: the binaries in $build are used as they are"
for s in "${steps[@]}"; do
  if out_of_time; then
    record "$s" "$s" SKIP "out of time budget (GPU_CHECK_BUDGET_S=${GPU_CHECK_BUDGET_S:-560})"
    save_state
    continue
  fi
  if [ "$dry" -eq 0 ] && [ "$has_gpu" -eq 0 ] && [[ "$gpu_steps" == *" $s "* ]]; then
    record "$s" "$s" SKIP "no GPU visible (nvidia-smi lists none); --dry-run tests the orchestration alone"
    save_state
    continue
  fi
  echo "gpu_check: --- $s ($((deadline - SECONDS)) s left)"
  current_step=$s
  case "$s" in
    build) step_build ;;
    cuda_tests) step_cuda_tests ;;
    memcheck | initcheck) step_sanitizer "$s" ;;
    nccl) step_nccl ;;
    smoke) step_smoke ;;
    learn) step_learn ;;
    labs) step_labs ;;
    bench) step_bench ;;
    ablate) step_ablate ;;
  esac
  current_step=""
  [ -n "${result[$s]:-}" ] || result[$s]=PASS
  save_state
  pack
done
finish
