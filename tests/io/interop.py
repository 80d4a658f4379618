#!/usr/bin/env python3
"""Interop between byol.cpp's safetensors files and the safetensors Python package.

    python3 tests/io/interop.py PATH/TO/safetensors_tool

1. byol.cpp writes the sample; safetensors.numpy.load_file reads it (numpy has no bfloat16, so that
   file leaves the bf16 tensor out), and safetensors.deserialize, the package's own parser, reads a
   second file with every dtype including BF16, whose bits are compared.
2. safetensors.numpy.save_file writes the sample (without bf16, which numpy cannot hold) and
   safetensors.serialize_file writes the bf16 tensor alone from raw bits; byol.cpp reads both.

The sample is defined in tests/io/safetensors_tool.cpp; keep the two in step. Exits 77 (ctest: skipped),
saying why, when python3 lacks numpy or safetensors (scripts/setup_python.sh installs them).
"""
import os
import subprocess
import sys
import tempfile

SKIP = 77

try:
    import numpy as np
    import safetensors
    import safetensors.numpy as stnp
except ImportError as e:
    print(f"SKIPPED safetensors interop: {e}; run scripts/setup_python.sh to install safetensors and numpy")
    sys.exit(SKIP)

METADATA = {"format": "byol.cpp sample", "step": "42"}
BF16_NAME = "half.bf16"
BF16_BITS = np.array([[0x3F80, 0xC000], [0x0001, 0x7F80]], dtype=np.uint16)


def sample():
    """The sample without its bf16 tensor, as numpy arrays."""
    return {
        "weight.f32": ((np.arange(6, dtype=np.float32) - np.float32(2.5)) / np.float32(4)).reshape(2, 3),
        "stats.f64": np.array([1.0 / 3.0, -2.0, 1e300], dtype=np.float64),
        "bytes.u8": np.array([0, 1, 127, 128, 255], dtype=np.uint8),
        "index.i32": np.array([[np.iinfo(np.int32).min, -1], [0, np.iinfo(np.int32).max]], dtype=np.int32),
        "count.i64": np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max], dtype=np.int64),
        "scalar.f32": np.array(3.5, dtype=np.float32),
        "empty.f32": np.zeros((0, 4), dtype=np.float32),
    }


failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def run_tool(tool, *args):
    r = subprocess.run([tool, *args], capture_output=True, text=True)
    sys.stdout.write(r.stdout)
    sys.stdout.write(r.stderr)
    return r.returncode


def cpp_to_python(tool, tmp):
    expected = sample()
    path = os.path.join(tmp, "cpp_numpy.safetensors")
    check(run_tool(tool, "write-sample", path, "--without-bf16") == 0, "byol.cpp writes the sample (no bf16)")
    loaded = stnp.load_file(path)
    check(sorted(loaded) == sorted(expected), f"load_file finds the tensors {sorted(expected)}")
    for name, want in expected.items():
        check(name in loaded and same(loaded[name], want), f"load_file: {name} {want.dtype}{list(want.shape)}")
    with safetensors.safe_open(path, framework="numpy") as f:
        check(f.metadata() == METADATA, "safe_open reads the metadata")

    path = os.path.join(tmp, "cpp_all.safetensors")
    check(run_tool(tool, "write-sample", path) == 0, "byol.cpp writes the sample with bf16")
    with open(path, "rb") as f:
        entries = dict(safetensors.deserialize(f.read()))
    check(sorted(entries) == sorted([*expected, BF16_NAME]), "deserialize finds every tensor, bf16 included")
    bf = entries.get(BF16_NAME, {})
    check(bf.get("dtype") == "BF16" and list(bf.get("shape", [])) == [2, 2], "deserialize: half.bf16 is BF16[2, 2]")
    check(bytes(bf.get("data", b"")) == BF16_BITS.tobytes(), "deserialize: half.bf16 holds the sample's bits")
    for name, want in expected.items():
        e = entries.get(name, {})
        check(list(e.get("shape", [-1])) == list(want.shape) and bytes(e.get("data", b"-")) == want.tobytes(),
              f"deserialize: {name} bytes")


def serialize_bf16(path):
    """Writes the bf16 tensor alone with the package's raw serializer (numpy cannot hold bf16); False
    when this safetensors version offers no raw serializer we know how to call."""
    data = np.ascontiguousarray(BF16_BITS)
    if hasattr(safetensors, "TensorSpec"):  # safetensors >= 0.7
        spec = safetensors.TensorSpec(dtype="bfloat16", shape=[2, 2], data_ptr=data.ctypes.data,
                                      data_len=data.nbytes)
    else:  # older versions take {"dtype", "shape", "data"} dicts
        spec = {"dtype": "bfloat16", "shape": [2, 2], "data": data.tobytes()}
    try:
        safetensors.serialize_file({BF16_NAME: spec}, path, metadata=METADATA)
    except (TypeError, AttributeError) as e:
        print(f"note: safetensors {safetensors.__version__}: serialize_file failed ({e}); bf16 not checked")
        return False
    return True


def python_to_cpp(tool, tmp):
    path = os.path.join(tmp, "numpy.safetensors")
    stnp.save_file(sample(), path, metadata=METADATA)
    print("note: numpy has no bfloat16, so the file from safetensors.numpy.save_file has no bf16 tensor")
    check(run_tool(tool, "check-sample", path) == 0, "byol.cpp reads the file from safetensors.numpy.save_file")

    path = os.path.join(tmp, "bf16.safetensors")
    if serialize_bf16(path):
        check(run_tool(tool, "check-bf16", path) == 0, "byol.cpp reads the BF16 file from safetensors.serialize_file")


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    tool = sys.argv[1]
    print(f"safetensors {safetensors.__version__}, numpy {np.__version__}")
    with tempfile.TemporaryDirectory(prefix="byol_interop.") as tmp:
        cpp_to_python(tool, tmp)
        python_to_cpp(tool, tmp)
    if failures:
        print(f"{len(failures)} interop check(s) failed")
        return 1
    print("safetensors interop: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
