#!/usr/bin/env bash
# Installs the Python packages the safetensors interop test (tests/io/interop.py) uses: safetensors and
# numpy from PyPI, into the python3 on PATH. Idempotent: quiet and fast when both are importable.
# Without python3 it says so and exits 0; the interop test then reports itself as skipped.
set -euo pipefail

if ! command -v python3 >/dev/null 2>&1; then
  echo "setup_python: python3 not found; the safetensors interop test will be skipped"
  exit 0
fi
if python3 -c "import safetensors, numpy" >/dev/null 2>&1; then
  exit 0
fi

echo "setup_python: installing safetensors and numpy for $(command -v python3)"
# numpy only when missing: a PyPI numpy over Debian's would break Debian's torch (built against 1.24)
wanted=(safetensors)
python3 -c "import numpy" >/dev/null 2>&1 || wanted+=(numpy)
pip_install() { PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check "$@" "${wanted[@]}"; }
# Debian's python3 refuses pip installs outside a virtual environment (PEP 668, "externally managed");
# the tests run that python3 (tests/io/CMakeLists.txt finds python3 on PATH), so install into it anyway.
if pip_install 2>/dev/null || pip_install --break-system-packages; then
  echo "setup_python: done"
else
  # e.g. Debian's own python3 without pip, or one that refuses system-wide installs (PEP 668)
  echo "setup_python: could not pip-install safetensors and numpy; the safetensors interop test will be skipped"
fi
