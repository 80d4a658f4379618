#!/usr/bin/env python3
"""The folder picture of docs/architecture.md, checked from the #include lines: no folder includes a
folder above it.

  engine/math/   the per-element formulas: includes nothing but engine/math/ (and the standard library)
  engine/        tensors, autograd, the op front end, both backends: engine/ only
  models/, data/ engine/ and themselves
  byol/          the algorithm: engine/, models/, data/, byol/
  apps/          the programs: everything above, not tests/ or benchmarks/

Usage: check_layers.py REPO_ROOT. Prints every offending include and exits 1 if there is one.
"""
import pathlib
import re
import sys

ALLOWED = [  # (folder, project folders its files may include), most specific first
    ("engine/math", {"engine/math"}),
    ("engine", {"engine"}),
    ("models", {"engine", "models"}),
    ("data", {"engine", "data"}),
    ("byol", {"engine", "models", "data", "byol"}),
    ("apps", {"engine", "models", "data", "byol", "apps"}),
]
SOURCES = {".h", ".hpp", ".cpp", ".cu", ".cuh"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def allowed_for(rel: str):
    for folder, allowed in ALLOWED:
        if rel.startswith(folder + "/"):
            return folder, allowed
    return None, None


def main() -> int:
    root = pathlib.Path(sys.argv[1]).resolve()
    bad, checked = [], 0
    top_folders = sorted({folder.split("/")[0] for folder, _ in ALLOWED})
    paths = sorted(p for top in top_folders if (root / top).is_dir() for p in (root / top).rglob("*"))
    for path in paths:
        if path.suffix not in SOURCES or not path.is_file():
            continue
        rel = path.relative_to(root).as_posix()
        folder, allowed = allowed_for(rel)
        if folder is None:
            continue
        checked += 1
        for target in INCLUDE.findall(path.read_text(errors="replace")):
            if "/" not in target:
                continue  # a file next to this one
            ok = any(target.startswith(a + "/") for a in allowed)
            # engine/math is the bottom of engine/: nothing in it includes the rest of the engine.
            if ok and folder == "engine/math" and not target.startswith("engine/math/"):
                ok = False
            if not ok:
                bad.append(f"{rel}: includes \"{target}\" (files in {folder}/ may include "
                           f"{', '.join(sorted(a + '/' for a in allowed))} only)")
    if checked == 0:
        print(f"check_layers: no sources found under {root}")
        return 1
    for line in bad:
        print(line)
    print(f"check_layers: {checked} files, {len(bad)} includes against the layering")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
