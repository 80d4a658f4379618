#!/usr/bin/env bash
# Runs abort_probe on two ranks: passes when the job exits non-zero, promptly, naming the failing rank.
set -u
out=$(timeout 60 "$@" 2>&1)
rc=$?
echo "$out"
if [ $rc -eq 124 ]; then echo "FAIL: the job hung (killed after 60 s)"; exit 1; fi
if [ $rc -eq 0 ]; then echo "FAIL: the job exited 0 although rank 1 failed"; exit 1; fi
echo "$out" | grep -q "error on rank 1 of 2: simulated failure" || { echo "FAIL: no clear message from rank 1"; exit 1; }
echo "PASS: the job went down (exit $rc) with rank 1's message"
