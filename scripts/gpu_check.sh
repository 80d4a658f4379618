#!/usr/bin/env bash
# The GPU check of issue 6: configure and build byol.cpp with CUDA, run the [cuda] tests, a byol-pretrain
# smoke run on the GPU (synthetic data: stop, resume, kNN monitor, export), the GPU step benchmark
# (ResNet-18 CIFAR batch 256, ResNet-50 ImageNet 224x224 batch 128) next to the PyTorch reference, the
# multi-GPU scaling model on the measured ResNet-50 rate, the kernel labs and compute-sanitizer memcheck
# on the kernel tests, in that order, inside a deadline (GPU_CHECK_BUDGET_S, default 560 s); print a
# summary table last (summary.txt grows as steps finish).
#
#   scripts/gpu_check.sh [OUT_DIR]          (OUT_DIR defaults to $OUT, else ./gpu_check_out)
#   scripts/gpu_check.sh prepare-carry      (on a Debian machine with scripts/setup.sh's packages)
#
# Made for a GPU machine that has nvcc, cmake, python3 and NVIDIA's pip packages but no Debian packages and
# no network, and works as well on any machine with a system-wide CUDA toolkit, cuDNN and NCCL:
#  - cuDNN / NCCL: $CUDNN_ROOT / $NCCL_ROOT if set, else python3's site-packages/nvidia/{cudnn,nccl}, else
#    whatever CMake finds in the toolkit (without cuDNN the build still succeeds, but CUDA convolutions
#    throw, so their tests fail and say why);
#  - Eigen, Catch2 (v2), nlohmann-json, zlib, CLI11, toml++: from the system, else from the git-ignored
#    folder .carry/ in the repository root, which `scripts/gpu_check.sh prepare-carry` fills from the
#    Debian packages (headers, CMake package files, libraries; relocatable, about 15 MB). Carry .carry/ to
#    the GPU machine with the tree;
#  - OpenBLAS, MPI, libjpeg, libpng are optional and simply reported as not found.
# Everything (configure and build logs, test output, sanitizer report, lab and benchmark output, the
# summary) is written under OUT_DIR. Exit status: 0 when every step passed.
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
carry="$root/.carry"

# Header-only or build-time dependencies that a bare GPU machine lacks: copied with their CMake package
# files (which locate everything relative to themselves) from these Debian packages, /usr -> .carry.
carry_packages=(libeigen3-dev catch2 nlohmann-json3-dev zlib1g-dev libcli11-dev libtomlplusplus-dev)

if [ "${1:-}" = "prepare-carry" ]; then
  set -e
  rm -rf "$carry"
  mkdir -p "$carry"
  for pkg in "${carry_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      echo "gpu_check: $pkg is not installed here, skipping it"
      continue
    fi
    dpkg -L "$pkg" | while read -r f; do
      [ -f "$f" ] || continue
      case "$f" in
        /usr/include/* | /usr/share/*/cmake/* | /usr/share/cmake/* | /usr/lib/cmake/* | /usr/lib/*/cmake/*)
          mkdir -p "$carry/$(dirname "${f#/usr/}")"
          cp "$f" "$carry/${f#/usr/}" ;;
        /usr/lib/*.a)
          mkdir -p "$carry/$(dirname "${f#/usr/}")"
          cp "$f" "$carry/${f#/usr/}" ;;
        /usr/lib/*.so | /lib/*.so)  # a development symlink: the library itself, also under its SONAME
          rel="${f#/usr/}"
          rel="lib/${rel#lib/}"
          mkdir -p "$carry/$(dirname "$rel")"
          cp -L "$f" "$carry/$rel"
          soname="$(objdump -p "$f" 2>/dev/null | awk '/SONAME/ {print $2}')"
          if [ -n "$soname" ]; then cp -L "$f" "$carry/$(dirname "$rel")/$soname"; fi ;;
      esac
    done
  done
  echo "gpu_check: prepared $carry ($(du -sh "$carry" | cut -f1))"
  exit 0
fi

out="${1:-${OUT:-$root/gpu_check_out}}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
build="$root/build-gpu"
jobs="$(nproc 2>/dev/null || echo 8)"
summary=()
failed=0
# Each result also goes to summary.txt at once, so a run cut short (the device's 10-minute limit) keeps
# what it finished.
: >"$out/summary.txt"
record() {  # name, status, detail
  local line
  line="$(printf '%-34s %-8s %s' "$1" "$2" "$3")"
  summary+=("$line")
  echo "$line" >>"$out/summary.txt"
  [ "$2" = "PASS" ] || [ "$2" = "INFO" ] || failed=1
}
# A deadline for the whole run (GPU_CHECK_BUDGET_S, default 560 s): each step's timeout is capped at the
# time left, so the order below is the order of importance (build, [cuda] tests, the GPU training smoke
# run, step benchmarks, scaling model, kernel labs, memcheck). A step reached with under 15 s left gets
# 1 s and fails with rc 124 (timeout's code): read rc 124 in the summary as "out of time budget".
deadline=$((SECONDS + ${GPU_CHECK_BUDGET_S:-560}))
budget() {  # wanted seconds -> seconds allowed (never 0: GNU timeout treats 0 as no limit)
  local left=$((deadline - SECONDS))
  if [ "$left" -lt 15 ]; then echo 1; elif [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}
log() { echo "gpu_check: $*" | tee -a "$out/gpu_check.log"; }

# --- toolchain and GPU ------------------------------------------------------------------------------------
nvcc_bin="$(command -v nvcc || true)"
[ -z "$nvcc_bin" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc_bin=/usr/local/cuda/bin/nvcc
if [ -z "$nvcc_bin" ]; then
  log "no nvcc on PATH or in /usr/local/cuda/bin"; exit 1
fi
PATH="$(dirname "$nvcc_bin"):$PATH"
export PATH
gpu="$(nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader 2>/dev/null | head -1)"
arch="$(echo "$gpu" | awk -F', ' '{print $2}' | tr -d '.')"
log "nvcc: $("$nvcc_bin" --version | tail -1); GPU: ${gpu:-none visible}"
[ -z "$arch" ] && arch="80;90"

# --- cuDNN and NCCL ---------------------------------------------------------------------------------------
site_nvidia="$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0])' 2>/dev/null || true)"
find_lib() {  # dir, stem -> newest lib<stem>.so* in dir
  find "$1" -maxdepth 1 -name "lib$2.so*" 2>/dev/null | sort -V | tail -1
}
cmake_args=(-DBYOL_CUDA=ON -DBYOL_OPENBLAS=OFF -DBYOL_BENCHMARKS=ON -DBYOL_TESTS=ON
            "-DCMAKE_CUDA_COMPILER=$nvcc_bin" "-DCMAKE_CUDA_ARCHITECTURES=$arch")
ld_dirs=()
for pkg in cudnn nccl; do
  upper="$(echo "$pkg" | tr '[:lower:]' '[:upper:]')"
  root_var="${upper}_ROOT"
  dir="${!root_var:-}"
  [ -z "$dir" ] && [ -n "$site_nvidia" ] && [ -d "$site_nvidia/$pkg" ] && dir="$site_nvidia/$pkg"
  if [ -n "$dir" ] && [ -d "$dir/include" ]; then
    lib="$(find_lib "$dir/lib" "$pkg")"
    [ -z "$lib" ] && lib="$(find_lib "$dir/lib64" "$pkg")"
    if [ -n "$lib" ]; then
      # pip wheels ship only lib<name>.so.<major>: hand CMake the file itself
      cmake_args+=("-DBYOL_${upper}_INCLUDE=$dir/include" "-DBYOL_${upper}_LIB=$lib")
      ld_dirs+=("$(dirname "$lib")")
      log "$pkg: $lib"
      continue
    fi
  fi
  log "$pkg: not given (set ${root_var}); CMake searches the toolkit"
done
if [ -d "$carry" ]; then
  while read -r d; do ld_dirs+=("$d"); done < <(find "$carry" -name '*.so*' -printf '%h\n' | sort -u)
fi
if [ ${#ld_dirs[@]} -gt 0 ]; then
  LD_LIBRARY_PATH="$(IFS=:; echo "${ld_dirs[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LD_LIBRARY_PATH
fi
prefix="$carry"
cmake_args+=("-DCMAKE_PREFIX_PATH=$prefix")
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

# --- configure and build -------------------------------------------------------------------------------------
log "configuring in $build"
if cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "${cmake_args[@]}" \
    >"$out/configure.log" 2>&1; then
  record "configure" PASS "$(grep -E 'byol: (CUDA|cuDNN|NCCL):' "$out/configure.log" | sed 's/.*byol: //' | tr '\n' ';')"
else
  record "configure" FAIL "see configure.log"
  tail -30 "$out/configure.log"
fi
targets=(byol_tests byol_step_bench byol-pretrain batch_norm_lab byol_loss_lab ema_lab lars_lab metrics_lab
         optimizers_lab elementwise_lab)
log "building ${targets[*]} with $jobs jobs"
if cmake --build "$build" -j "$jobs" --target "${targets[@]}" >"$out/build.log" 2>&1; then
  record "build" PASS "$(grep -ci 'warning' "$out/build.log") warning lines"
else
  record "build" FAIL "see build.log"
  tail -40 "$out/build.log"
fi

# --- tests -----------------------------------------------------------------------------------------------
tests="$build/tests/byol_tests"
if [ -x "$tests" ]; then
  log "[cuda] tests"
  (cd "$build/tests" && timeout "$(budget 300)" "$tests" "[cuda]" --durations yes) >"$out/cuda_tests.log" 2>&1
  rc=$?
  result="$(grep -E '^(All tests passed|test cases:)' "$out/cuda_tests.log" | tail -1)"
  record "[cuda] tests" "$([ $rc -eq 0 ] && echo PASS || echo FAIL)" "rc $rc; $result"
  log "CPU kernel-helper tests"
  (cd "$build/tests" && timeout "$(budget 120)" "$tests" "[kernels]") >"$out/kernel_helper_tests.log" 2>&1
  rc=$?
  record "[kernels] helper tests (CPU)" "$([ $rc -eq 0 ] && echo PASS || echo FAIL)" "rc $rc"
else
  record "[cuda] tests" FAIL "byol_tests was not built"
fi

# --- byol-pretrain on the GPU: a few steps on synthetic data (no download), a stop and a resume ---------------
pretrain="$build/apps/byol-pretrain"
if [ -x "$pretrain" ]; then
  smoke="$out/pretrain_smoke"
  rm -rf "$smoke"
  args=(--set data.train=synthetic:1024:10:32 --set data.side=32 --set data.normalization=none
        --set data.workers=4 --set data.knn_train=synthetic:512:10:32 --set data.knn_test=synthetic:256:10:32
        --set model.stem=cifar --set train.batch_size=128 --set train.epochs=2 --set train.warmup_epochs=1
        --set run.device=cuda --set run.log_every=2 --set run.checkpoint_every=4 --set run.out="$smoke")
  log "byol-pretrain on the GPU (16 steps, stop at 6, resume)"
  timeout "$(budget 240)" "$pretrain" "${args[@]}" --set run.max_steps=6 >"$out/pretrain_smoke.log" 2>&1
  rc1=$?
  timeout "$(budget 240)" "$pretrain" "${args[@]}" --resume >>"$out/pretrain_smoke.log" 2>&1
  rc2=$?
  ok=0
  [ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && [ -f "$smoke/encoder.safetensors" ] && grep -q "on cuda" "$out/pretrain_smoke.log" &&
    grep -q '"knn_top1"' "$smoke/metrics.jsonl" && ok=1
  record "byol-pretrain GPU smoke" "$([ $ok -eq 1 ] && echo PASS || echo FAIL)" \
    "rc $rc1/$rc2; $(grep -E '^done:|error' "$out/pretrain_smoke.log" | tail -1)"
else
  record "byol-pretrain GPU smoke" FAIL "byol-pretrain not built"
fi

# --- the step benchmark next to PyTorch -----------------------------------------------------------------------
bench="$build/benchmarks/byol_step_bench"
torch_ok=0
python3 -c 'import torch, torchvision, sys; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1 && torch_ok=1
# name, byol_step_bench arguments, byol_step_torch.py arguments (same model, stem, side and batch)
step_benches=(
  "resnet18_cifar_b256|256 20 64 32 4096 cifar --depth 18|256 20 1 --depth 18 --stem cifar --side 32"
  "resnet50_imagenet224_b128|128 10 64 224 4096 imagenet --depth 50|128 10 1 --depth 50 --stem imagenet --side 224"
)
for entry in "${step_benches[@]}"; do
  IFS='|' read -r name ours theirs <<< "$entry"
  if [ ! -x "$bench" ]; then record "step $name" FAIL "byol_step_bench not built"; continue; fi
  log "byol_step_bench --device cuda: $name"
  # shellcheck disable=SC2086
  timeout "$(budget 180)" "$bench" $ours --device cuda >"$out/step_$name.log" 2>&1
  rc=$?
  record "step $name (byol.cpp)" "$([ $rc -eq 0 ] && echo INFO || echo FAIL)" "$(tail -1 "$out/step_$name.log")"
  if [ $torch_ok -eq 1 ]; then
    # shellcheck disable=SC2086
    timeout "$(budget 180)" python3 "$root/benchmarks/reference/byol_step_torch.py" $theirs --device cuda \
      >"$out/step_${name}_torch.log" 2>&1
    rc=$?
    record "step $name (PyTorch)" "$([ $rc -eq 0 ] && echo INFO || echo FAIL)" "$(tail -1 "$out/step_${name}_torch.log")"
  else
    record "step $name (PyTorch)" INFO "skipped: python3 has no torch/torchvision with CUDA"
  fi
done

# --- the multi-GPU scaling model (docs/scaling.md) from the measured ResNet-50 step -------------------------
if grep -q "ResNet-50 .* images/s" "$out/step_resnet50_imagenet224_b128.log" 2>/dev/null; then
  python3 "$root/scripts/scaling_model.py" --from-log "$out/step_resnet50_imagenet224_b128.log" \
    >"$out/scaling.md" 2>&1
  rc=$?
  record "scaling model (docs/scaling.md)" "$([ $rc -eq 0 ] && echo INFO || echo FAIL)" \
    "$(grep -E '^\| 8 \||^\| 64 \|' "$out/scaling.md" | sed -E 's/ +/ /g' | tr '\n' ';')"
else
  record "scaling model (docs/scaling.md)" FAIL "no ResNet-50 step rate measured"
fi

# --- kernel labs ----------------------------------------------------------------------------------------------
for lab in batch_norm_lab byol_loss_lab ema_lab lars_lab metrics_lab optimizers_lab elementwise_lab; do
  exe="$build/benchmarks/$lab"
  if [ ! -x "$exe" ]; then record "$lab" FAIL "not built"; continue; fi
  log "$lab"
  timeout "$(budget 180)" "$exe" >"$out/$lab.log" 2>&1
  rc=$?
  record "$lab" "$([ $rc -eq 0 ] && echo PASS || echo FAIL)" \
    "$(grep -E '^v1' "$out/$lab.log" | sed -E 's/ +/ /g; s/ \(min [^)]*\)//; s/ of the copy bandwidth//' | tr '\n' ';')"
done

# --- compute-sanitizer memcheck on the kernel tests (last: the slowest) ------------------------------------
if [ -x "$tests" ]; then
  sanitizer="$(command -v compute-sanitizer || true)"
  [ -z "$sanitizer" ] && [ -x "$(dirname "$nvcc_bin")/compute-sanitizer" ] && sanitizer="$(dirname "$nvcc_bin")/compute-sanitizer"
  if [ -n "$sanitizer" ]; then
    log "compute-sanitizer memcheck on the kernel tests ([cuda-kernels])"
    (cd "$build/tests" && timeout "$(budget 300)" "$sanitizer" --tool memcheck --error-exitcode 99 --leak-check no \
       "$tests" "[cuda-kernels]") >"$out/memcheck.log" 2>&1
    rc=$?
    record "memcheck [cuda-kernels]" "$([ $rc -eq 0 ] && echo PASS || echo FAIL)" \
      "rc $rc; $(grep -E 'ERROR SUMMARY' "$out/memcheck.log" | tail -1)"
  else
    record "memcheck [cuda-kernels]" FAIL "compute-sanitizer not found"
  fi
fi

# --- summary -------------------------------------------------------------------------------------------------
{
  echo
  echo "=== gpu_check summary (${gpu:-no GPU}) — logs in $out ==="
  printf '%-34s %-8s %s\n' "step" "status" "detail"
  for line in "${summary[@]}"; do echo "$line"; done
} | tee "$out/summary.txt"
exit $failed
