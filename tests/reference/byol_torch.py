"""BYOL in plain PyTorch, written from the paper and the official code (not from byol.cpp), for the
training-level references: tests/reference/byol_trajectory.py (step-by-step against byol.cpp) and
tests/reference/byol_train.py (whole training runs with kNN evaluation).

  networks   ResNet-18 at any base width with the CIFAR stem (3x3/1 conv, no max pool) or the ImageNet
             stem (7x7/2 conv, 3x3/2 max pool), torchvision's names; projector and predictor
             Linear -> BN -> ReLU -> Linear (no bias on the last)
  loss       mean_n [(2 - 2 cos(p1, z'2)) + (2 - 2 cos(p2, z'1))], x * rsqrt(max(|x|^2, 1e-12))
  LARS       g' = g + wd w; trust = eta |w| / |g'| (1 when a norm is 0); m = mu m + trust g'; w -= lr m
             biases and BN parameters (every 1-D tensor) get neither weight decay nor the trust ratio
  schedules  lr = base_lr * batch / 256, linear warmup then cosine to 0; tau = 1 - (1 - tau_base) *
             (cos(pi k / K) + 1) / 2
  EMA        target = tau target + (1 - tau) online, after the LARS step
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, inp, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inp != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inp, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + (self.downsample(x) if self.downsample is not None else x))


class ResNet18(nn.Module):
    def __init__(self, base, stem="cifar"):
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem: expected cifar or imagenet, got {stem!r}")
        self.imagenet_stem = stem == "imagenet"
        self.conv1 = nn.Conv2d(3, base, 7, 2, 3, bias=False) if self.imagenet_stem else nn.Conv2d(3, base, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        inp = base
        for stage in range(4):
            planes = base << stage
            blocks = []
            for b in range(2):
                blocks.append(BasicBlock(inp, planes, 2 if stage > 0 and b == 0 else 1))
                inp = planes
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.out_features = inp

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        if self.imagenet_stem:
            h = F.max_pool2d(h, 3, 2, 1)
        for stage in range(4):
            h = getattr(self, f"layer{stage + 1}")(h)
        return h.mean(dim=(2, 3))


def ResNet18Cifar(base):
    return ResNet18(base, "cifar")


def mlp(inp, hidden, out):
    return nn.Sequential(nn.Linear(inp, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, out, bias=False))


class Online(nn.Module):
    def __init__(self, base, proj_hidden, proj_dim, pred_hidden, stem="cifar"):
        super().__init__()
        self.encoder = ResNet18(base, stem)
        self.projector = mlp(self.encoder.out_features, proj_hidden, proj_dim)
        self.predictor = mlp(proj_dim, pred_hidden, proj_dim)

    def forward(self, v):
        return self.predictor(self.projector(self.encoder(v)))


class Target(nn.Module):
    def __init__(self, base, proj_hidden, proj_dim, stem="cifar"):
        super().__init__()
        self.encoder = ResNet18(base, stem)
        self.projector = mlp(self.encoder.out_features, proj_hidden, proj_dim)

    def forward(self, v):
        return self.projector(self.encoder(v))


def byolcpp_init_(module, gen):
    """byol.cpp's initialisers (models/module.cpp): convolutions kaiming-normal with fan-out, linear
    weights and biases uniform(+-1/sqrt(fan_in)), BN scale 1 and shift 0."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.weight.shape[0] * m.weight.shape[2] * m.weight.shape[3]
                m.weight.normal_(0.0, math.sqrt(2.0 / fan_out), generator=gen)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.weight.shape[1])
                m.weight.uniform_(-bound, bound, generator=gen)
                if m.bias is not None:
                    m.bias.uniform_(-bound, bound, generator=gen)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.fill_(1.0)
                m.bias.zero_()


def regression_loss(p, z):
    pn = p * torch.rsqrt(torch.clamp((p * p).sum(-1, keepdim=True), min=1e-12))
    zn = z * torch.rsqrt(torch.clamp((z * z).sum(-1, keepdim=True), min=1e-12))
    return 2 - 2 * (pn * zn).sum(-1)


def byol_loss(p1, z2, p2, z1):
    return (regression_loss(p1, z2) + regression_loss(p2, z1)).mean()


def lr_at(step, total_steps, warmup_steps, base_lr, batch):
    lr = base_lr * batch / 256.0
    if step < warmup_steps:
        return lr * step / warmup_steps
    k = min(max(step - warmup_steps, 0), total_steps - warmup_steps)
    return lr * 0.5 * (1.0 + math.cos(math.pi * k / max(total_steps - warmup_steps, 1)))


def tau_at(step, total_steps, tau_base):
    k = min(max(step, 0), total_steps)
    return 1.0 - (1.0 - tau_base) * 0.5 * (1.0 + math.cos(math.pi * k / total_steps))


class Lars:
    """The official LARS chain (optax): add weight decay, scale by the trust ratio, momentum (trace, not
    Nesterov), scale by -lr. 1-D tensors (biases, BN) are excluded from both decay and adaptation."""

    def __init__(self, params, weight_decay, eta, momentum):
        self.params = list(params)
        self.wd, self.eta, self.mu = weight_decay, eta, momentum
        self.buf = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, lr):
        for p, m in zip(self.params, self.buf):
            g = p.grad
            if p.dim() == 1:
                u = g
            else:
                u = g + self.wd * p
                pn, un = p.norm(), u.norm()
                trust = torch.where((pn > 0) & (un > 0), self.eta * pn / un, torch.ones_like(pn))
                u = u * trust
            m.mul_(self.mu).add_(u)
            p.sub_(lr * m)


@torch.no_grad()
def ema_(target, online, tau):
    on = dict(online.named_parameters())
    for n, t in target.named_parameters():
        t.mul_(tau).add_((1 - tau) * on[n])
