#!/usr/bin/env bash
# Installs the Python packages two tests use, from PyPI into the python3 on PATH: safetensors and numpy (the
# safetensors interop test, tests/io/interop.py) and tensorboard (its reader checks byol-pretrain's event
# files, tests/apps/tensorboard_events.sh; it also gives `tensorboard --logdir runs/`). Idempotent: quiet
# and fast when all are importable. Without python3 it says so and exits 0; the tests then report
# themselves as skipped.
set -euo pipefail

if ! command -v python3 >/dev/null 2>&1; then
  echo "setup_python: python3 not found; the safetensors interop test will be skipped"
  exit 0
fi
if python3 -c "import safetensors, numpy, tensorboard" >/dev/null 2>&1; then
  exit 0
fi

# numpy only when missing: a PyPI numpy over Debian's would break Debian's torch (built against 1.24);
# pip leaves installed packages that satisfy tensorboard's requirements alone
wanted=()
python3 -c "import safetensors" >/dev/null 2>&1 || wanted+=(safetensors)
python3 -c "import tensorboard" >/dev/null 2>&1 || wanted+=(tensorboard)
python3 -c "import numpy" >/dev/null 2>&1 || wanted+=(numpy)
echo "setup_python: installing ${wanted[*]} for $(command -v python3)"
pip_install() { PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check "$@" "${wanted[@]}"; }
# Debian's python3 refuses pip installs outside a virtual environment (PEP 668, "externally managed");
# the tests run that python3 (tests/io/CMakeLists.txt finds python3 on PATH), so install into it anyway.
if pip_install 2>/dev/null || pip_install --break-system-packages; then
  echo "setup_python: done"
else
  # e.g. Debian's own python3 without pip, or one that refuses system-wide installs (PEP 668)
  echo "setup_python: could not pip-install ${wanted[*]}; the safetensors interop and TensorBoard tests will be skipped"
fi
