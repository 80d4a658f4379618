#!/usr/bin/env bash
# byol-pack as a user meets it: it creates the output folder, refuses to replace a pack without --force
# (exit 1, the old pack untouched), replaces it with --force (and drops the old pack's extra shards), and
# answers a usage error with exit 2.
#   pack_cli.sh BYOL_PACK WORK_DIR
set -uo pipefail
bin=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
fails=0
fail() {
  echo "FAIL: $*"
  fails=$((fails + 1))
}
prefix="$work/new/folder/p"
"$bin" synthetic:40:2:8 "$prefix" --shard-mb 1 --threads 1 > "$work/1.log" 2>&1 || fail "first pack: $(tail -2 "$work/1.log")"
[ -f "$prefix.index" ] && [ -f "$prefix-00000.bin" ] || fail "no pack in the folder it had to create: $(ls -R "$work")"
cp "$prefix.index" "$work/first.index"

# A pack with more shards under a second prefix, then its place taken by a smaller one.
big="$work/big/p"
"$bin" synthetic:600:2:64 "$big" --shard-mb 1 --threads 1 > "$work/big.log" 2>&1 || fail "big pack: $(tail -2 "$work/big.log")"
[ -f "$big-00001.bin" ] || fail "the 600 images of 64x64 (7 MB) should span several 1 MiB shards: $(ls "$work/big")"

"$bin" synthetic:20:2:8 "$prefix" --threads 1 > "$work/2.log" 2>&1
rc=$?
[ $rc -eq 1 ] || fail "packing over an existing pack exited $rc, expected 1"
grep -q "$prefix.index exists: give --force" "$work/2.log" || fail "no clear refusal: $(cat "$work/2.log")"
cmp -s "$prefix.index" "$work/first.index" || fail "the refused run changed the existing pack"

"$bin" synthetic:20:2:8 "$big" --threads 1 --force > "$work/3.log" 2>&1 || fail "--force: $(tail -2 "$work/3.log")"
[ ! -e "$big-00001.bin" ] || fail "--force left the old pack's extra shards: $(ls "$work/big")"
grep -q "wrote 20 images" "$work/3.log" || fail "--force did not write the new pack: $(cat "$work/3.log")"

"$bin" synthetic:20:2:8 "$work/x" --no-such-option > "$work/4.log" 2>&1
rc=$?
[ $rc -eq 2 ] || fail "an unknown option exited $rc, expected 2 (usage)"
[ $fails -eq 0 ] && echo "PASS: byol-pack creates folders, refuses to overwrite without --force, replaces with it" || exit 1
