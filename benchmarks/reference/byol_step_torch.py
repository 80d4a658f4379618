#!/usr/bin/env python3
"""The BYOL step of benchmarks/byol_step_bench.cpp in PyTorch, for side-by-side timing on the CPU.

    /usr/bin/python3 benchmarks/reference/byol_step_torch.py [batch=64] [steps=3] [threads=2]

ResNet-18 with the CIFAR stem (torchvision's ResNet-18 with a 3x3/1 first conv and no max pool),
projector and predictor 512 -> 4096 -> 256 and 256 -> 4096 -> 256, two 32x32 views; one step is the
online forward/backward of both views, the target forward of both, the loss, LARS and the EMA, as in
the C++ benchmark. Debian's python3-torch (oneDNN convolutions) and python3-torchvision.
"""
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


def encoder():
    m = torchvision.models.resnet18()
    m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    m.fc = nn.Identity()
    return m


def mlp(i, h, o):
    return nn.Sequential(nn.Linear(i, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Linear(h, o, bias=False))


def main():
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    online = nn.ModuleDict(dict(encoder=encoder(), projector=mlp(512, 4096, 256)))
    predictor = mlp(256, 4096, 256)
    target = nn.ModuleDict(dict(encoder=encoder(), projector=mlp(512, 4096, 256)))
    params = list(online.parameters()) + list(predictor.parameters())
    momentum = [torch.zeros_like(p) for p in params]
    v1, v2 = torch.randn(batch, 3, 32, 32), torch.randn(batch, 3, 32, 32)

    def loss_fn(p, z):
        return 2 - 2 * (F.normalize(p, dim=-1) * F.normalize(z, dim=-1)).sum(-1)

    def step():
        for p in params:
            p.grad = None
        p1 = predictor(online.projector(online.encoder(v1)))
        p2 = predictor(online.projector(online.encoder(v2)))
        with torch.no_grad():
            z1 = target.projector(target.encoder(v1))
            z2 = target.projector(target.encoder(v2))
        loss = (loss_fn(p1, z2) + loss_fn(p2, z1)).mean()
        loss.backward()
        with torch.no_grad():  # LARS, then the EMA
            for p, m in zip(params, momentum):
                g = p.grad
                if p.dim() > 1:
                    g = g + 1e-6 * p
                    pn, gn = p.norm(), g.norm()
                    g = g * torch.where((pn > 0) & (gn > 0), 1e-3 * pn / gn, torch.ones_like(pn))
                m.mul_(0.9).add_(g)
                p.sub_(0.1 * m)
            for t, o in zip(target.parameters(), online.parameters()):
                t.mul_(0.99).add_(o, alpha=0.01)
        return loss.item()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    s = (time.perf_counter() - t0) / steps
    print(f"PyTorch {torch.__version__}  ResNet-18 CIFAR, batch {batch}, {threads} threads: "
          f"{s:.3f} s/step, {batch / s:.1f} images/s (loss {loss:.4f})")


if __name__ == "__main__":
    main()
