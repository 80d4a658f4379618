#!/usr/bin/env python3
"""Several BYOL steps in byol.cpp and in PyTorch from the same start, compared step by step.

    /usr/bin/python3 tests/reference/byol_trajectory.py BYOL_TRAJECTORY_BINARY WORK_DIR [options]

Both sides start from the same online and target weights (byol.cpp's initialisers, drawn here) and
take the same views, so until rounding differences grow the two trajectories must agree. What a
one-step fixture cannot see shows up here as a loss curve that leaves PyTorch's: state carried from one
step to the next (LARS momentum, the EMA target, BN running statistics, cached kernel state) and the
schedules. The PyTorch side runs in float64 and is the reference; the byol.cpp side runs in float32, so
agreement is judged against the float32 PyTorch run of the same steps (their distance is what float32
rounding alone does).

Views are random images by default (--views random) or, with --cifar DIR, crops of real images
(torchvision's augmentations), so the kernels see realistic activations.
Passes (exit 0) when, at every step, byol.cpp's loss is as close to float64 PyTorch's as float32 rounding
explains: |byol.cpp - f64| <= --factor x (the largest |f32 PyTorch - f64| so far) + --floor. A state
that is carried wrongly from step to step (a stale cached weight, a momentum or EMA applied twice, a
schedule off by one) moves the loss by far more than that within a few steps.
"""
import argparse
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import byol_torch as bt  # noqa: E402
from byol_step import write_safetensors  # noqa: E402


def read_safetensors(path):
    import json
    import struct
    import numpy as np
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        assert h["dtype"] == "F32", name
        a, b = h["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype="<f4").copy()).reshape(h["shape"])
    return out


def ours(t):
    t = t.detach()
    if t.dim() == 4:
        t = t.permute(0, 2, 3, 1)
    return t.to(torch.float32).contiguous()


def run_torch(args, online0, target0, v1, v2, dtype):
    online = bt.Online(args.base, args.proj_hidden, args.proj_dim, args.pred_hidden).to(dtype)
    target = bt.Target(args.base, args.proj_hidden, args.proj_dim).to(dtype)
    online.load_state_dict(online0)
    target.load_state_dict(target0)
    online.to(dtype), target.to(dtype)
    online.train(), target.train()
    lars = bt.Lars(online.parameters(), args.weight_decay, args.eta, args.momentum)
    losses = []
    for s in range(args.steps):
        x1, x2 = v1[s].to(dtype), v2[s].to(dtype)
        online.zero_grad(set_to_none=False)
        p1, p2 = online(x1), online(x2)
        with torch.no_grad():
            z1, z2 = target(x1), target(x2)
        loss = bt.byol_loss(p1, z2, p2, z1)
        loss.backward()
        lars.step(bt.lr_at(s, args.total_steps, args.warmup_steps, args.base_lr, args.batch))
        bt.ema_(target, online, bt.tau_at(s, args.total_steps, args.tau_base))
        losses.append(loss.item())
    return losses, online, target


def make_views(args, gen):
    shape = (args.steps, args.batch, 3, args.side, args.side)
    if args.cifar is None:
        return torch.rand(shape, generator=gen) * 2 - 1, torch.rand(shape, generator=gen) * 2 - 1
    import torchvision
    import torchvision.transforms as T
    ds = torchvision.datasets.ImageFolder(args.cifar)
    norm = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    aug = T.Compose([T.RandomResizedCrop(args.side, interpolation=T.InterpolationMode.BICUBIC),
                     T.RandomHorizontalFlip(), T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
                     T.RandomGrayscale(0.2), T.ToTensor(), norm])
    torch.manual_seed(args.seed)
    # Epochs of fresh permutations: more views than images (steps x batch > 50,000 on CIFAR-10) once left
    # steps 391-499 of a 500-step run unfilled (torch.empty), which both sides then "learned" to a loss of 0.
    need = args.steps * args.batch
    idx = torch.cat([torch.randperm(len(ds), generator=gen) for _ in range((need + len(ds) - 1) // len(ds))])[:need]
    v1, v2 = torch.empty(shape), torch.empty(shape)
    for k, i in enumerate(idx.tolist()):
        img = ds[i][0]
        v1[k // args.batch, k % args.batch] = aug(img)
        v2[k // args.batch, k % args.batch] = aug(img)
    return v1, v2


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("work")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--side", type=int, default=16)
    ap.add_argument("--base", type=int, default=8)
    ap.add_argument("--proj-hidden", type=int, default=64)
    ap.add_argument("--proj-dim", type=int, default=32)
    ap.add_argument("--pred-hidden", type=int, default=64)
    ap.add_argument("--total-steps", type=int, default=40)
    ap.add_argument("--warmup-steps", type=int, default=4)
    ap.add_argument("--base-lr", type=float, default=1.0)
    ap.add_argument("--weight-decay", type=float, default=1e-6)
    ap.add_argument("--eta", type=float, default=1e-3)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--tau-base", type=float, default=0.99)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cifar", help="an image folder (<dir>/<class>/*.jpg): views of real images")
    ap.add_argument("--factor", type=float, default=20.0)
    ap.add_argument("--floor", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=0, help="PyTorch threads (0: all cores)")
    ap.add_argument("--perturb", type=float, default=0.0,
                    help="multiply every initial weight by (1 + PERTURB x N(0,1)) drawn with --perturb-seed: a replicate"
                         " of the same run that rounding sends down its own path")
    ap.add_argument("--perturb-seed", type=int, default=1)
    ap.add_argument("--no-float64", action="store_true",
                    help="skip the float64 PyTorch run (long runs: compare the loss curves statistically instead)")
    ap.add_argument("--json", help="write the per-step losses of every side to this file")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    torch.set_num_threads(args.threads if args.threads > 0 else max(1, os.cpu_count() or 1))

    gen = torch.Generator().manual_seed(args.seed)
    online = bt.Online(args.base, args.proj_hidden, args.proj_dim, args.pred_hidden)
    target = bt.Target(args.base, args.proj_hidden, args.proj_dim)
    bt.byolcpp_init_(online, gen)
    bt.byolcpp_init_(target, gen)
    v1, v2 = make_views(args, gen)
    if args.perturb > 0:
        noise = torch.Generator().manual_seed(args.perturb_seed)
        with torch.no_grad():
            for p in list(online.parameters()) + list(target.parameters()):
                p.mul_(1 + args.perturb * torch.randn(p.shape, generator=noise))

    tensors = {}
    for n, p in online.named_parameters():
        tensors["init.online." + n] = ours(p)
    for n, p in target.named_parameters():
        tensors["init.target." + n] = ours(p)
    tensors["view1"] = v1.permute(0, 1, 3, 4, 2).contiguous()
    tensors["view2"] = v2.permute(0, 1, 3, 4, 2).contiguous()
    meta = dict(base_channels=args.base, projector_hidden=args.proj_hidden, projection_dim=args.proj_dim,
                predictor_hidden=args.pred_hidden, batch=args.batch, total_steps=args.total_steps,
                warmup_steps=args.warmup_steps, base_lr=args.base_lr, weight_decay=args.weight_decay,
                eta=args.eta, momentum=args.momentum, tau_base=args.tau_base)
    fin, fout = os.path.join(args.work, "trajectory_in.safetensors"), os.path.join(args.work, "trajectory_out.safetensors")
    write_safetensors(fin, tensors, meta)
    subprocess.run([args.binary, fin, fout], check=True)
    got = read_safetensors(fout)

    online0, target0 = online.state_dict(), target.state_dict()
    ours_loss = got["loss"].tolist()
    ref32, _, _ = run_torch(args, online0, target0, v1, v2, torch.float32)
    if args.no_float64:
        if args.json:
            import json
            with open(args.json, "w") as f:
                json.dump({"args": vars(args), "byolcpp": ours_loss, "torch_f32": ref32}, f)
        for a, b in ((0, 50), (50, 100), (100, 200), (200, 300), (300, 400), (400, 600), (600, 1000)):
            if a < args.steps:
                b = min(b, args.steps)
                print(f"steps {a:4d}-{b:4d}: mean loss byol.cpp {sum(ours_loss[a:b]) / (b - a):.4f}"
                      f"   float32 torch {sum(ref32[a:b]) / (b - a):.4f}")
        return 0
    ref64, on64, tg64 = run_torch(args, online0, target0, v1, v2, torch.float64)
    print("step   float64 torch   float32 torch   byol.cpp   |cpp - f64|   |f32 - f64|")
    failed, rounding = [], 0.0
    for s in range(args.steps):
        d, d32 = abs(ours_loss[s] - ref64[s]), abs(ref32[s] - ref64[s])
        rounding = max(rounding, d32)
        bound = args.factor * rounding + args.floor
        if d > bound:
            failed.append(s)
        print(f"{s:4d}   {ref64[s]:13.6f}   {ref32[s]:13.6f}   {ours_loss[s]:8.6f}   {d:11.2e}   {d32:11.2e}"
              f"{'   <- beyond ' + format(bound, '.1e') if d > bound else ''}")
    rel = []
    for n, p in on64.named_parameters():
        r = ours(p)
        c = got["final.online." + n]
        rel.append(((c.double() - r.double()).norm() / max(r.double().norm().item(), 1e-12)).item())
    print(f"final online parameters: worst relative difference {max(rel):.2e} (median {sorted(rel)[len(rel) // 2]:.2e})")
    if failed:
        print(f"FAIL: byol.cpp's loss left float64 PyTorch's by more than float32 rounding explains at steps {failed}")
        return 1
    print(f"PASS: byol.cpp's loss follows float64 PyTorch's over {args.steps} steps as closely as float32 PyTorch does")
    return 0


if __name__ == "__main__":
    sys.exit(main())
