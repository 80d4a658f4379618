#!/usr/bin/env python3
"""Every command the documentation shows is run, so the docs cannot drift from the apps (issue 15).

    docs_commands.py BUILD_APPS_DIR WORK_DIR

Reads README.md and docs/*.md, takes every line of a code block (fenced, or indented by 4 spaces) that
runs byol-pretrain, byol-eval or byol-pack (after an optional `./`, `build/apps/`-style path or
`mpirun -np N [--hostfile F]`), joins `\\` continuations, drops a trailing `# comment`, and runs it with
`--dry-run` added: byol-pretrain then reads its config, applies the --set overrides, opens the data, builds
the networks and draws the first batch; byol-eval loads the encoder (checking the shape flags against it) and
opens both datasets; byol-pack opens the dataset. Any error, unknown option or bad value fails the check.

A line with a placeholder (`SPEC`, `FILE`, `<...>`, `[...]`, `...`) is a synopsis, not a command: counted and
listed, not run. What a command needs and this machine may lack is made or replaced, and said:
- `runs/<name>/encoder.safetensors` and `runs/<name>/checkpoints/step_*.safetensors`: made by a short
  byol-pretrain run of the config whose run.out is runs/<name> (the same network), on synthetic images of
  the config's size; the checkpoint is copied to the documented name.
- another `*.safetensors` named as a torchvision encoder (`--depth 50 --stem imagenet`): torchvision's
  ResNet with random weights, written by this script (python3 with torch, installed by scripts/setup.sh).
- a dataset whose file or folder does not exist here (relative paths are taken from the project root, as
  the docs are): replaced by `synthetic:<count>:10:<side>`; for byol-pretrain, the config's own data keys
  too. A batch above 256 is cut to 64 for the dry run (its first batch of 4096 at 224 px would take 5 GB).
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APPS = ("byol-pretrain", "byol-eval", "byol-pack")
PLACEHOLDER = re.compile(r"\bSPEC\b|\bFILE\b|<[^>]*>|\[[^\]=]*\]|\.\.\.")


def documented_commands():
    """(file, line number, code block number, command text) for every app invocation in a code block."""
    files = [os.path.join(ROOT, "README.md")] + sorted(
        os.path.join(ROOT, "docs", f) for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md"))
    app = re.compile(r"^(?:mpirun\s+-np\s+\d+\s+(?:--hostfile\s+\S+\s+)?)?(?:\S*/)?(" + "|".join(APPS) + r")\s")
    out = []
    for path in files:
        lines = open(path, encoding="utf-8").read().split("\n")
        fenced, block, was_in_block = False, 0, False
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.lstrip().startswith("```"):
                fenced = not fenced
                block += 1
                i += 1
                continue
            in_block = fenced or (line.startswith("    ") and not line.lstrip().startswith(("-", "*")))
            if (in_block and not was_in_block) or (fenced and line.lstrip().startswith("#")):
                block += 1  # a new block, or a new group of a block (a comment line introduces each)
            was_in_block = in_block
            text = line.strip()
            start = i
            if in_block and app.match(text):
                while text.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    text = text[:-1].rstrip() + " " + lines[i].strip()
                text = re.sub(r"\s+#.*$", "", text)
                out.append((os.path.relpath(path, ROOT), start + 1, block, text))
            i += 1
    return out


def path_of_spec(spec):
    """The file or folder a dataset spec reads, or None (synthetic, fashion-mnist from the Debian package)."""
    kind, _, rest = spec.partition(":")
    if kind in ("folder", "tar", "cifar10", "cifar100", "stl10", "idx") and rest:
        return rest.split(":")[0]
    if kind == "packed" and rest:
        return rest + ".index"
    if kind == "fashion-mnist":
        parts = rest.split(":") if rest else []
        return parts[0] if parts and parts[0] not in ("train", "test") else None
    return None


def usable(spec):
    """The spec with a relative path made absolute (from the project root), or None when its data is missing."""
    p = path_of_spec(spec)
    if spec.startswith("fashion-mnist") and p is None:
        # the Debian package's files (data/dataset.h): present after scripts/setup.sh
        return spec if os.path.isdir("/usr/share/datasets/fashion-mnist") else None
    if p is None:
        return spec
    absolute = p if os.path.isabs(p) else os.path.join(ROOT, p)
    if not os.path.exists(absolute):
        return None
    return spec.replace(p, absolute, 1)


class Check:
    def __init__(self, apps_dir, work):
        self.apps, self.work = apps_dir, work
        self.notes, self.failures, self.made = [], [], {}
        self.configs = {}
        for f in os.listdir(os.path.join(ROOT, "configs")):
            if f.endswith(".toml"):
                c = tomllib.load(open(os.path.join(ROOT, "configs", f), "rb"))
                self.configs[os.path.join("configs", f)] = c

    def run(self, argv, what):
        r = subprocess.run(argv, cwd=self.work, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "OMP_NUM_THREADS": "2"})
        return r.returncode, (r.stdout + r.stderr).strip()

    def synthetic(self, side, count=64):
        return f"synthetic:{count}:10:{side}"

    def make_run(self, name):
        """runs/<name>/ from a short run of the config that writes there."""
        if name in self.made:
            return self.made[name]
        cfg_path = next((p for p, c in self.configs.items() if c.get("run", {}).get("out") == f"runs/{name}"), None)
        if cfg_path is None:
            raise RuntimeError(f"no config in configs/ has run.out = runs/{name}")
        side = self.configs[cfg_path].get("data", {}).get("side", 32)
        cmd = [os.path.join(self.apps, "byol-pretrain"), "--config", os.path.join(ROOT, cfg_path),
               "--set", f"data.train={self.synthetic(side, 16)}", "--set", "data.knn_train=",
               "--set", "data.knn_test=", "--set", "data.workers=1", "--set", "train.batch_size=8",
               "--set", "train.epochs=1", "--set", "train.warmup_epochs=0", "--set", "run.device=cpu",
               "--set", "run.checkpoint_every=1", "--set", f"run.out={os.path.join(self.work, 'runs', name)}"]
        rc, text = self.run(cmd, "make run")
        if rc != 0:
            raise RuntimeError(f"making runs/{name} with {cfg_path} failed:\n{text[-800:]}")
        self.notes.append(f"runs/{name}/: made by 2 steps of {cfg_path} on synthetic {side} px images")
        self.made[name] = os.path.join(self.work, "runs", name)
        return self.made[name]

    def encoder_file(self, path, args):
        """Makes the encoder or checkpoint file a documented byol-eval command reads."""
        m = re.match(r"runs/([^/]+)/(encoder\.safetensors|checkpoints/step_\d+\.safetensors)$", path)
        target = os.path.join(self.work, path)
        if os.path.exists(target):
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if m:
            run = self.make_run(m.group(1))
            if m.group(2) != "encoder.safetensors":
                ckpts = sorted(os.listdir(os.path.join(run, "checkpoints")))
                shutil.copy(os.path.join(run, "checkpoints", ckpts[-1]), target)
            return
        import torch
        import torchvision
        sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
        from byol_step import write_safetensors  # the reference fixtures' writer
        depth = int(args.get("--depth", 18))
        if args.get("--stem", "cifar") != "imagenet" or args.get("--base-channels", "64") != "64":
            raise RuntimeError(f"{path}: only torchvision's own ResNets (ImageNet stem, base 64) can be made here")
        torch.manual_seed(0)
        net = getattr(torchvision.models, f"resnet{depth}")()
        write_safetensors(target, {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")},
                          {})
        self.notes.append(f"{path}: torchvision's resnet{depth} with random weights")

    def command(self, where, text):
        words = shlex.split(text)
        if words[0] == "mpirun":
            words = words[3:]
            if words[0] == "--hostfile":
                words = words[2:]
        app = os.path.basename(words[0])
        argv = [os.path.join(self.apps, app)] + words[1:]
        replaced = []
        if app == "byol-eval":
            args = {}
            for k, w in enumerate(argv):
                if w.startswith("--") and k + 1 < len(argv) and not argv[k + 1].startswith("--"):
                    args[w] = argv[k + 1]
            side = args.get("--side", "32")
            for k, w in enumerate(argv):
                if w in ("--train", "--test"):
                    fixed = usable(argv[k + 1])
                    if fixed is None:
                        replaced.append(argv[k + 1])
                        fixed = self.synthetic(side)
                    argv[k + 1] = fixed
                if w == "--encoder":
                    self.encoder_file(argv[k + 1], args)
        elif app == "byol-pack":
            positional = [k for k, w in enumerate(argv[1:], 1) if not w.startswith("-")
                          and not argv[k - 1] in ("--short-side", "--crop", "--shard-mb", "--threads")]
            spec, prefix = positional[0], positional[1]
            fixed = usable(argv[spec])
            if fixed is None:
                replaced.append(argv[spec])
                fixed = self.synthetic(32)
            argv[spec] = fixed
            argv[prefix] = os.path.join(self.work, "packs", os.path.basename(argv[prefix]))
        elif app == "byol-pretrain":
            sets = {}
            for k, w in enumerate(argv):
                if w == "--config":
                    argv[k + 1] = os.path.join(ROOT, argv[k + 1])
                    cfg = self.configs.get(os.path.relpath(argv[k + 1], ROOT), {})
                if w == "--set":
                    key, _, value = argv[k + 1].partition("=")
                    sets[key] = (k + 1, value)
            data = cfg.get("data", {})
            side = int(sets.get("data.side", (0, data.get("side", 32)))[1])
            batch = int(sets.get("train.batch_size", (0, cfg.get("train", {}).get("batch_size", 256)))[1])
            if batch > 256:
                argv += ["--set", "train.batch_size=64"]
                batch = 64
            for key in ("train", "knn_train", "knn_test"):
                full = f"data.{key}"
                spec = sets[full][1] if full in sets else data.get(key, "")
                if not spec:
                    continue
                fixed = usable(spec)
                if fixed is None:
                    replaced.append(spec)
                    fixed = self.synthetic(side, max(64, batch))
                if full in sets:
                    argv[sets[full][0]] = f"{full}={fixed}"
                elif fixed != spec:
                    argv += ["--set", f"{full}={fixed}"]
            argv += ["--set", f"run.out={os.path.join(self.work, 'pretrain_out')}", "--set", "run.device=cpu"]
        argv.append("--dry-run")
        rc, out = self.run(argv, where)
        shown = f"{where}: {text}"
        if replaced:
            self.notes.append(f"{where}: data not on this machine, replaced by synthetic images: {', '.join(replaced)}")
        if rc != 0:
            self.failures.append(f"{shown}\n  ran: {shlex.join(argv)}\n  exit {rc}: {out[-600:]}")
        return rc == 0


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    apps_dir, work = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    check = Check(apps_dir, work)
    ran, synopses, baselines = 0, [], 0
    commands = documented_commands()
    for path, line, block, text in commands:
        where = f"{path}:{line}"
        if PLACEHOLDER.search(text):
            synopses.append(f"{where}: {text}")
            continue
        try:
            check.command(where, text)
            # A random-init baseline shown next to a pretrained encoder must be that encoder's network:
            # its shape flags, given with the encoder instead of --random-init, must match the file.
            if "--random-init" in text.split():
                encoders = [re.search(r"--encoder\s+(runs/\S+)", c).group(1) for p, _, b, c in commands
                            if p == path and b == block and re.search(r"--encoder\s+runs/\S+", c)]
                for enc in dict.fromkeys(encoders):
                    if check.command(f"{where} (its shape flags against {enc})",
                                     text.replace("--random-init", f"--encoder {enc}", 1)):
                        baselines += 1
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            check.failures.append(f"{where}: {text}\n  {e}")
        ran += 1
    for n in check.notes:
        print("note:", n)
    for s in synopses:
        print("synopsis (not run):", s)
    if ran == 0:
        print("FAIL: no documented command found (has the docs' layout changed?)")
        return 1
    if check.failures:
        print(f"FAIL: {len(check.failures)} of {ran} documented commands do not run:")
        for f in check.failures:
            print(" -", f)
        return 1
    print(f"PASS: all {ran} documented commands run (--dry-run), {baselines} random-init baselines describe the "
          f"encoder they are shown with; {len(synopses)} synopsis lines skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
