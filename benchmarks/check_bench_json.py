#!/usr/bin/env python3
"""The benchmarks' and labs' command lines (ctest benchmarks_cli_json).

    check_bench_json.py WORK_DIR TOOL...

For every TOOL (a benchmark or a kernel lab, by path): `--help` exits 0, an unknown option exits 2.
A benchmark then runs at the smallest sizes its options allow with `--json FILE`: it exits 0 and FILE is
one JSON object naming the tool, with its options and a non-empty "rows" list in which every row holds at
least one time (a key ending in "_ms", at any depth) and every time is finite and positive; no FILE.tmp is
left behind. A lab runs with CUDA_VISIBLE_DEVICES hidden, so it must say it skipped, exit 0 and write
{"tool": ..., "skipped": "no GPU visible"} (its measurements need a GPU: scripts/gpu_check.sh).
Uses only the standard library.
"""
import json
import math
import os
import subprocess
import sys

# The smallest run of each benchmark (a few seconds on 2 cores).
SMALL_ARGS = {
    "cpu_ops_bench": ["1", "1"],  # batch 1, 1 repeat
    "loader_bench": ["--data", "synthetic:64:10:32", "--images", "1", "--big-images", "1",
                     "--batch", "1", "--workers", "2"],
    # batch 2, 1 step, base 4, 8x8, MLP 8; the phase rows, and the loader path on a synthetic dataset
    "byol_step_bench": ["2", "1", "4", "8", "8", "--phases", "--data", "synthetic:8:10:8", "--workers", "1"],
}

failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)
    return ok


def run(cmd, env=None):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120,
                          env=env)


def times(value, key=""):
    """Every (key, value) whose key ends in _ms, at any depth."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from times(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from times(v, key)
    elif key.endswith("_ms"):
        yield key, value


def check_result(name, path):
    if not check(os.path.exists(path), f"{name}: --json wrote {path}"):
        return None
    check(not os.path.exists(path + ".tmp"), f"{name}: no {path}.tmp left")
    try:
        with open(path) as f:
            result = json.load(f)
    except ValueError as e:
        check(False, f"{name}: {path} parses as JSON ({e})")
        return None
    check(isinstance(result, dict) and result.get("tool") == name, f"{name}: the object names the tool")
    check(isinstance(result.get("revision"), str), f"{name}: the object holds the build revision")
    return result


def check_benchmark(path, name, work):
    out = os.path.join(work, name + ".json")
    if os.path.exists(out):
        os.remove(out)
    r = run([path] + SMALL_ARGS[name] + ["--json", out])
    if not check(r.returncode == 0, f"{name} {' '.join(SMALL_ARGS[name])} --json exits 0 (got {r.returncode})"):
        print(r.stdout + r.stderr)
        return
    result = check_result(name, out)
    if result is None:
        return
    check(isinstance(result.get("options"), dict) and result["options"], f"{name}: options recorded")
    rows = result.get("rows")
    if not check(isinstance(rows, list) and rows, f"{name}: a non-empty rows list"):
        return
    for i, row in enumerate(rows):
        label = f"{name}: row {i} ({row.get('name')})"
        found = list(times(row))
        if not found:
            check(False, f"{label} holds a time")
        for key, t in found:
            if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
                check(False, f"{label}: {key} = {t!r} is a finite positive time")
    print(f"      {name}: {len(rows)} rows, times checked")


def check_lab_skip(path, name, work):
    out = os.path.join(work, name + ".json")
    if os.path.exists(out):
        os.remove(out)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    r = run([path, "--json", out], env=env)
    check(r.returncode == 0 and "skipped: no GPU visible" in r.stdout,
          f"{name} --json with no visible GPU says skipped and exits 0 (got {r.returncode})")
    result = check_result(name, out)
    if result is not None:
        check(result.get("skipped") == "no GPU visible", f"{name}: the object says skipped: no GPU visible")


def main():
    work, tools = sys.argv[1], sys.argv[2:]
    os.makedirs(work, exist_ok=True)
    for path in tools:
        name = os.path.basename(path)
        r = run([path, "--help"])
        check(r.returncode == 0 and "--json" in r.stdout,
              f"{name} --help exits 0 and lists --json (got {r.returncode})")
        r = run([path, "--no-such-option"])
        check(r.returncode == 2 and r.stderr.strip(),
              f"{name} --no-such-option exits 2 with a message (got {r.returncode})")
        if name.endswith("_lab"):
            check_lab_skip(path, name, work)
        else:
            check_benchmark(path, name, work)
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
