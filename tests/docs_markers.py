#!/usr/bin/env python3
"""docs/byol.md's links into the code stay true (issue 16).

    docs_markers.py [PROJECT_ROOT]

The walk-through links each equation to code through named markers, `[byol:NAME](../path)`, and the code
carries the comment `// [byol:NAME]` above what computes it. Fails when a marker the page names is not in the
file it links, or appears more than once in the sources; when a marker in the sources is not on the page;
or when the page names a file (a link, or a path in backticks) that does not exist.
"""
import os
import re
import sys

root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
page = os.path.join(root, "docs", "byol.md")
text = open(page, encoding="utf-8").read()
errors = []

sources = {}
for top in ("apps", "byol", "data", "engine", "kernels", "models", "benchmarks", "tests", "scripts"):
    for dirpath, _, files in os.walk(os.path.join(root, top)):
        for f in files:
            if f.endswith((".cpp", ".h", ".cu", ".cuh", ".py", ".sh")) and f != "docs_markers.py":
                path = os.path.join(dirpath, f)
                sources[os.path.relpath(path, root)] = open(path, encoding="utf-8", errors="replace").read()
in_code = {}
for rel, src in sources.items():
    for name in re.findall(r"//\s*\[byol:([a-z0-9-]+)\]", src):
        in_code.setdefault(name, []).append(rel)

linked = re.findall(r"\[byol:([a-z0-9-]+)\]\(([^)]+)\)", text)
if not linked:
    errors.append("docs/byol.md links no marker")
named = set()
for name, link in linked:
    named.add(name)
    target = os.path.normpath(os.path.join(os.path.dirname(page), link))
    rel = os.path.relpath(target, root)
    if not os.path.isfile(target):
        errors.append(f"[byol:{name}] links {link}, which does not exist")
        continue
    places = in_code.get(name, [])
    if not places:
        errors.append(f"[byol:{name}]: no `// [byol:{name}]` in the sources (linked to {rel})")
    elif len(places) > 1:
        errors.append(f"[byol:{name}] appears {len(places)} times: {', '.join(places)}")
    elif places[0] != rel:
        errors.append(f"[byol:{name}] is in {places[0]}, the page links {rel}")
for name, places in sorted(in_code.items()):
    if name not in named:
        errors.append(f"`// [byol:{name}]` in {', '.join(places)} is not on docs/byol.md")
for path in sorted(set(re.findall(r"`((?:[\w.-]+/)+[\w.-]+\.(?:cpp|h|cu|cuh|py|sh|toml|md))`", text))):
    if not os.path.exists(os.path.join(root, path)):
        errors.append(f"docs/byol.md names `{path}`, which does not exist")

if errors:
    print("FAIL:\n  " + "\n  ".join(errors))
    sys.exit(1)
print(f"PASS: {len(named)} markers on docs/byol.md, each once in the file it links; no marker left off the page")
