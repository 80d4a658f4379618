#!/usr/bin/env python3
"""The BYOL step of benchmarks/byol_step_bench.cpp in PyTorch, for side-by-side timing.

    /usr/bin/python3 benchmarks/reference/byol_step_torch.py [batch=64] [steps=3] [threads=2]
        [--device cpu|cuda] [--depth 18|50] [--stem cifar|imagenet] [--side 32] [--format nchw|nhwc]
        [--amp bf16] [--compile]

ResNet-18 with the CIFAR stem by default (torchvision's ResNet with a 3x3/1 first conv and no max pool;
--stem imagenet keeps torchvision's 7x7/2 conv and max pool), projector and predictor
D -> 4096 -> 256 and 256 -> 4096 -> 256 (D = 512 for ResNet-18, 2048 for ResNet-50), two side x side
views; one step is the online forward/backward of both views, the target forward of both, the loss, LARS
and the EMA, as in the C++ benchmark. On the CPU: Debian's python3-torch (oneDNN convolutions) and
python3-torchvision, wall-clock time with the loss read each step. With --device cuda: channels-last
tensors, TF32 allowed for convolutions and matmuls (as byol.cpp's default), the steps queued back to back
and timed with CUDA events around all of them, the loss read once after the last, like
`byol_step_bench --device cuda`.

--amp bf16: the forward passes and the loss under torch.autocast(device, dtype=torch.bfloat16) (the
reference for bf16 mixed precision: convolutions and matmuls in bf16, batch norm and the optimizer in
fp32); --compile: the online and target networks and the predictor through torch.compile (PyTorch 2 and
later; an older torch, as Debian 12's 1.13, says so and exits with status 3, which scripts read as
"not available"). The printed line names the variant.
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


def encoder(depth, stem):
    m = torchvision.models.resnet18() if depth == 18 else torchvision.models.resnet50()
    if stem == "cifar":
        m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        m.maxpool = nn.Identity()
    m.fc = nn.Identity()
    return m


def mlp(i, h, o):
    return nn.Sequential(nn.Linear(i, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Linear(h, o, bias=False))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("batch", nargs="?", type=int, default=64)
    ap.add_argument("steps", nargs="?", type=int, default=3)
    ap.add_argument("threads", nargs="?", type=int, default=2)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--depth", type=int, choices=[18, 50], default=18)
    ap.add_argument("--stem", choices=["cifar", "imagenet"], default="cifar")
    ap.add_argument("--side", type=int, default=32)
    ap.add_argument("--format", choices=["nchw", "nhwc"], default=None,
                    help="memory format: nchw (PyTorch's default) or nhwc (channels_last, byol.cpp's layout); "
                         "default nchw on the CPU, nhwc on CUDA")
    ap.add_argument("--amp", choices=["bf16"], default=None,
                    help="autocast the forward passes and the loss to bfloat16")
    ap.add_argument("--compile", action="store_true", help="torch.compile the networks (PyTorch 2+)")
    a = ap.parse_args()
    if a.compile and not hasattr(torch, "compile"):
        print(f"PyTorch {torch.__version__} has no torch.compile (PyTorch 2 and later): --compile not available")
        raise SystemExit(3)
    batch, steps, threads = a.batch, a.steps, a.threads
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    if a.device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cuda.matmul.allow_tf32 = True
    dim = 512 if a.depth == 18 else 2048
    online = nn.ModuleDict(dict(encoder=encoder(a.depth, a.stem), projector=mlp(dim, 4096, 256)))
    predictor = mlp(256, 4096, 256)
    target = nn.ModuleDict(dict(encoder=encoder(a.depth, a.stem), projector=mlp(dim, 4096, 256)))
    layout = a.format or ("nhwc" if a.device == "cuda" else "nchw")
    fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
    for m in (online, predictor, target):
        m.to(dev, memory_format=fmt)
    params = list(online.parameters()) + list(predictor.parameters())
    run_online = {k: (torch.compile(m) if a.compile else m) for k, m in online.items()}
    run_target = {k: (torch.compile(m) if a.compile else m) for k, m in target.items()}
    run_predictor = torch.compile(predictor) if a.compile else predictor

    def autocast():
        if a.amp == "bf16":
            return torch.autocast(device_type=a.device, dtype=torch.bfloat16)
        return torch.autocast(device_type=a.device, enabled=False)

    momentum = [torch.zeros_like(p) for p in params]
    v1 = torch.randn(batch, 3, a.side, a.side, device=dev).contiguous(memory_format=fmt)
    v2 = torch.randn(batch, 3, a.side, a.side, device=dev).contiguous(memory_format=fmt)

    def loss_fn(p, z):
        return 2 - 2 * (F.normalize(p, dim=-1) * F.normalize(z, dim=-1)).sum(-1)

    def step():
        for p in params:
            p.grad = None
        with autocast():
            p1 = run_predictor(run_online["projector"](run_online["encoder"](v1)))
            p2 = run_predictor(run_online["projector"](run_online["encoder"](v2)))
            with torch.no_grad():
                z1 = run_target["projector"](run_target["encoder"](v1))
                z2 = run_target["projector"](run_target["encoder"](v2))
        # the loss in fp32, as byol.cpp's bf16 path keeps it
        loss = (loss_fn(p1.float(), z2.float()) + loss_fn(p2.float(), z1.float())).mean()
        loss.backward()
        with torch.no_grad():  # LARS, then the EMA, with the multi-tensor (_foreach) ops: a Python loop over
            # the parameters would launch each small op from the interpreter and leave the GPU waiting on
            # the host (ResNet-50 has 161 parameter tensors), which would understate PyTorch
            grads = [p.grad for p in params]
            mats = [i for i, p in enumerate(params) if p.dim() > 1]  # weight decay and trust ratio
            mp, mg = [params[i] for i in mats], [grads[i] for i in mats]
            torch._foreach_add_(mg, mp, alpha=1e-6)
            pn, gn = torch.stack(torch._foreach_norm(mp)), torch.stack(torch._foreach_norm(mg))
            trust = torch.where((pn > 0) & (gn > 0), 1e-3 * pn / gn, torch.ones_like(pn))
            torch._foreach_mul_(mg, list(trust.unbind()))
            torch._foreach_mul_(momentum, 0.9)
            torch._foreach_add_(momentum, grads)
            torch._foreach_add_(params, momentum, alpha=-0.1)
            tp, op = list(target.parameters()), list(online.parameters())
            torch._foreach_mul_(tp, 0.99)
            torch._foreach_add_(tp, op, alpha=0.01)
        return loss

    step().item()
    if a.device == "cuda":
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            loss = step()
        stop.record()
        stop.synchronize()
        s = start.elapsed_time(stop) / 1e3 / steps
        where = torch.cuda.get_device_name()
    else:
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = step().item()
        s = (time.perf_counter() - t0) / steps
        where = f"{threads} threads"
    variant = layout + (", AMP bf16" if a.amp else "") + (", torch.compile" if a.compile else "")
    print(f"PyTorch {torch.__version__}  ResNet-{a.depth} {'CIFAR' if a.stem == 'cifar' else 'ImageNet'} "
          f"stem, {a.side}x{a.side}, {variant}, batch {batch}, {where}: {s:.4f} s/step, {batch / s:.1f} images/s "
          f"(loss {float(loss):.4f})")


if __name__ == "__main__":
    main()
