#!/usr/bin/env bash
# Installs the Debian packages byol.cpp builds with. Idempotent: quiet and fast when nothing is missing.
#   scripts/setup.sh            build + test dependencies
# CUDA (nvcc, cuDNN, cuBLAS, NCCL) is never installed here: it is optional and auto-detected under
# /usr/local/cuda (or CUDAToolkit_ROOT); see README.md.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libeigen3-dev   # CPU backend
  libopenblas-openmp-dev   # GEMM behind Eigen (optional in the build, much faster)
  libdnnl-dev              # oneDNN: the CPU convolutions (optional in the build, much faster)
  nlohmann-json3-dev   # safetensors headers (JSON)
  libtomlplusplus-dev libcli11-dev   # byol-pretrain's TOML configs, the apps' command lines
  catch2          # tests (Catch2 v2, header-only)
  libomp-dev      # OpenMP runtime headers for clang users; g++ ships libgomp
  libjpeg62-turbo-dev libpng-dev zlib1g-dev   # image decoding (optional in the build)
  openmpi-bin libopenmpi-dev   # multi-process training and its mpirun -np 2 tests (optional in the build)
  dataset-fashion-mnist   # the default dataset on a fresh machine (IDX files under /usr/share/datasets)
  python3-torchvision     # the PyTorch references: training-level checks, torchvision export, scaling model
  python3-numpy python3-pip   # the safetensors interop test: numpy from Debian, pip for PyPI's safetensors
  python3-matplotlib      # scripts/plot_runs.py (overlays runs' curves) and its test
  bsdutils                # script(1): the progress-output test's pseudo-terminal (Essential on Debian)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "setup: done"
fi

# Python packages for the interop tests (optional: those tests skip, saying why, without them).
bash "$(dirname "$0")/setup_python.sh"
