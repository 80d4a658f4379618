#!/usr/bin/env python3
"""Reference state of one BYOL step, computed by PyTorch, for tests/test_reference_step.cpp.

    /usr/bin/python3 tests/reference/byol_step.py tests/fixtures/byol_step.safetensors

Needs Debian's python3-torch (and its numpy). It builds a narrow ResNet-18 (CIFAR stem, 4 base
channels, torchvision's names) with BYOL's projector and predictor, draws the online and target
networks from different random initialisations, two input views and a non-zero LARS momentum state,
then runs one BYOL step in float64, written out from the paper and the official code rather than from
byol.cpp:

  p_i = q(g(f(v_i))), z'_i = g'(f'(v_i)) under no_grad (BN in training mode for both networks)
  loss = mean_n [ (2 - 2 cos(p1, z'2)) + (2 - 2 cos(p2, z'1)) ]
  LARS: g' = g + wd w; trust = eta |w| / |g'| (1 if a norm is 0); m = mu m + trust g'; w -= lr m
        biases and BN parameters (the 1-D tensors here) get neither weight decay nor the trust ratio
  EMA: target = tau target + (1 - tau) online, after the LARS step
  BN running statistics: decay 0.9 with the *biased* batch variance (Haiku's BatchNorm, which the
  official code uses; torch's own BatchNorm would track the unbiased one, so the expected running
  statistics are computed by hooks here).

Variants of the objective (the paper's comparison with SimCLR, byol/objective.h), for the same networks
and inputs: --beta B --temperature A replace the loss by the paper's unified objective summed over both
orders of the views, written here from the paper's formula (a log-sum-exp over the other view's targets
and the own view's other targets), not from byol.cpp's decomposition:

  loss = sum over (v, v') in {(v1, v2), (v2, v1)} of  2 - InfoNCE_{alpha,beta}(v, v')
  InfoNCE = 2/B sum_i cos(p_i, z'_i) - beta 2 alpha/B sum_i ln( sum_{j != i} exp(cos(p_i, z_j) / alpha)
                                                              + sum_j exp(cos(p_i, z'_j) / alpha) )

--conv-bf16 reproduces train.precision = "bf16" (engine/cpu/cpu_backend.h, ConvGeom::bf16): every
convolution's product operands rounded to bf16 (nearest even) and the products summed in full precision:
forward x and w, backward data dy and w, and backward filter x and dy where byol.cpp's rule says so (outputs
of at most 8x8, or 3x3 with at least 16 input channels; elsewhere that pass is exact); and the heads' linear
layers likewise (x and w, dy and w, dy and x; the bias exact). Written here as an autograd
function over torch's own convolution gradients, not from byol.cpp's code.

--bf16-activations reproduces train.precision = "bf16" with bf16 activations (models::ForwardContext::
bf16_activations; the GPU's form, train.cpu_bf16_activations on the CPU): every tensor byol.cpp stores in
bf16 between the encoder's layers is rounded here where it is made, forward and backward (the input, each
convolution's output, each batch norm + shortcut + ReLU's output, the pooled features, and the gradients
of all of them), the convolutions' weights rounded in their products; batch norm's math and the heads exact.
Written here from that description of where the roundings are, not from byol.cpp's kernels.
That step is chaotic: the reference computes in float64, byol.cpp in float32, and where a value lies within
float32 rounding of a bf16 rounding boundary the two round it apart; batch norm spreads each such flip to
every value after it and the bf16 gradients of batch norm's parameters are mostly rounding noise. A relative
noise of 1e-7 before every rounding (float32's own size) moved this fixture's loss by up to 4e-3 and most of
its gradients by 1 to 100 % (2026-12-05, found on an AVX2 CPU where byol.cpp's float32 sums flipped a few
roundings that the AMX machine's had not). So the fixture also holds, per compared tensor, spread.<name>:
the largest relative distance of SPREAD_RUNS reruns with that noise (seeded) from the noiseless reference,
and the test bounds each tensor by a multiple of its spread (never below the other fixtures' bounds).

--no-predictor makes p = z (the online projection), --no-target makes the targets the online projections
themselves, with gradients through them (SimCLR; no EMA, the target network is left as it was). The
metadata records the variant; tests/test_reference_step.cpp configures the Learner from it.

The fixture is a safetensors file (written by hand below: 8-byte header length, JSON header, raw
little-endian float32). Tensors are in byol.cpp's layouts: images NHWC, conv filters KRSC.
"""
import argparse
import json
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from byol_torch import ResNet18Cifar, mlp  # the networks, shared with the training-level references

SEED = 20261124
torch.manual_seed(SEED)
DT = torch.float64

# Hyperparameters of the step. eta and tau are larger than the recipe's so that the LARS update and the
# EMA move every tensor far more than float32 rounding does, which makes the comparison meaningful.
BATCH, SIDE, BASE = 6, 8, 4
PROJ_HIDDEN, PROJ_DIM, PRED_HIDDEN = 32, 16, 32
LR, WD, ETA, MOMENTUM, TAU = 0.8, 1e-2, 0.02, 0.9, 0.9


class Online(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = ResNet18Cifar(BASE)
        self.projector = mlp(self.encoder.out_features, PROJ_HIDDEN, PROJ_DIM)
        self.predictor = mlp(PROJ_DIM, PRED_HIDDEN, PROJ_DIM)


class Target(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = ResNet18Cifar(BASE)
        self.projector = mlp(self.encoder.out_features, PROJ_HIDDEN, PROJ_DIM)


def randomise(module):
    """Random weights, and BN scale/shift/statistics away from their defaults so every term matters."""
    for name, p in module.named_parameters():
        with torch.no_grad():
            if name.endswith("bn1.weight") or ".1.weight" in name or "bn2.weight" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn_like(p))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn_like(p) * (2.0 / fan_in) ** 0.5)
    for name, b in module.named_buffers():
        with torch.no_grad():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn_like(b))
            elif name.endswith("running_var"):
                b.copy_(1.0 + 0.1 * torch.rand_like(b))


class BiasedRunningStats:
    """Tracks what each BN layer's running statistics become with the biased batch variance."""

    def __init__(self, module, prefix):
        self.stats = {}
        for name, m in module.named_modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                key = prefix + name
                self.stats[key + ".running_mean"] = m.running_mean.detach().clone()
                self.stats[key + ".running_var"] = m.running_var.detach().clone()
                m.register_forward_pre_hook(self.hook(key))

    def hook(self, key):
        def fn(_module, inputs):
            x = inputs[0].detach()
            dims = [0] if x.dim() == 2 else [0, 2, 3]
            mean = x.mean(dim=dims)
            var = x.var(dim=dims, unbiased=False)
            self.stats[key + ".running_mean"] = 0.9 * self.stats[key + ".running_mean"] + 0.1 * mean
            self.stats[key + ".running_var"] = 0.9 * self.stats[key + ".running_var"] + 0.1 * var
        return fn


def ours(name, t):
    """byol.cpp's layout: conv filters OIHW -> KRSC, images NCHW -> NHWC."""
    t = t.detach()
    if t.dim() == 4:
        t = t.permute(0, 2, 3, 1)
    return t.to(torch.float32).contiguous()


def write_safetensors(path, tensors, metadata):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        data = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def bf16(t):
    """t with every value rounded to bfloat16 (nearest even), in t's dtype."""
    return t.to(torch.bfloat16).to(t.dtype)


# --bf16-activations' spread runs: (relative size, generator) of the noise put on every stored activation and
# gradient just before it is rounded (None: the reference itself).
NOISE = None
SPREAD_RUNS, SPREAD_NOISE = 3, 1e-7


def stored_bf16(t):
    """A value byol.cpp stores in bf16: rounded, after the spread runs' noise if one is running."""
    if NOISE is not None:
        size, gen = NOISE
        t = t * (1 + size * torch.randn(t.shape, generator=gen, dtype=t.dtype))
    return bf16(t)


class Bf16Conv(torch.autograd.Function):
    """A convolution whose products take bf16-rounded operands (train.precision = "bf16")."""

    @staticmethod
    def forward(ctx, x, w, stride, padding, filter_bf16):
        ctx.save_for_backward(x, w)
        ctx.conf = (stride, padding, filter_bf16)
        return F.conv2d(bf16(x), bf16(w), stride=stride, padding=padding)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        stride, padding, filter_bf16 = ctx.conf
        dx = torch.nn.grad.conv2d_input(x.shape, bf16(w), bf16(dy), stride=stride, padding=padding)
        if filter_bf16:
            dw = torch.nn.grad.conv2d_weight(bf16(x), w.shape, bf16(dy), stride=stride, padding=padding)
        else:
            dw = torch.nn.grad.conv2d_weight(x, w.shape, dy, stride=stride, padding=padding)
        return dx, dw, None, None, None


class Bf16Linear(torch.autograd.Function):
    """A linear layer whose products take bf16-rounded operands (the heads under train.precision = "bf16":
    byol.cpp runs them as 1x1 convolutions, whose backward-filter rule always rounds); the bias stays exact."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return F.linear(bf16(x), bf16(w), b)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        dx = bf16(dy) @ bf16(w)
        dw = bf16(dy).t() @ bf16(x)
        return dx, dw, dy.sum(0) if ctx.has_bias else None


def use_bf16_convolutions(module):
    """Every nn.Conv2d of module runs through Bf16Conv, with byol.cpp's backward-filter rule, and every
    nn.Linear through Bf16Linear."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            m.forward = lambda x, m=m: Bf16Linear.apply(x, m.weight, m.bias)
        if isinstance(m, nn.Conv2d):
            def forward(x, m=m):
                r = m.kernel_size[0]
                p = (x.shape[2] + 2 * m.padding[0] - r) // m.stride[0] + 1
                q = (x.shape[3] + 2 * m.padding[1] - m.kernel_size[1]) // m.stride[1] + 1
                rule = p * q <= 64 or (r == 3 and m.kernel_size[1] == 3 and x.shape[1] >= 16)
                return Bf16Conv.apply(x, m.weight, m.stride, m.padding, rule)
            m.forward = forward


class Round(torch.autograd.Function):
    """A stored bf16 activation (--bf16-activations): the value rounded to bf16, and its gradient too."""

    @staticmethod
    def forward(ctx, x):
        return stored_bf16(x)

    @staticmethod
    def backward(ctx, g):
        return stored_bf16(g)


class RoundGrad(torch.autograd.Function):
    """The identity, whose gradient is rounded to bf16: byol.cpp stores each op's input gradient in bf16
    before autograd adds the gradients of a tensor's uses (then rounds the sum once more)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return stored_bf16(g)


class Bf16ActConv(torch.autograd.Function):
    """A convolution of bf16 activations (already bf16 values) with bf16-rounded weights; its output and the
    gradient arriving at it are rounded by the Round around it. The weight gradient stays exact."""

    @staticmethod
    def forward(ctx, x, w, stride, padding):
        ctx.save_for_backward(x, w)
        ctx.conf = (stride, padding)
        return F.conv2d(x, bf16(w), stride=stride, padding=padding)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        stride, padding = ctx.conf
        dx = torch.nn.grad.conv2d_input(x.shape, bf16(w), dy, stride=stride, padding=padding)
        dw = torch.nn.grad.conv2d_weight(x, w.shape, dy, stride=stride, padding=padding)
        return dx, dw, None, None


def use_bf16_activations(encoder):
    """The encoder with every stored activation rounded to bf16 where byol.cpp stores one (train.precision =
    "bf16" with bf16 activations, the GPU's form): the input; each convolution's output; each batch norm's
    output after its ReLU and the shortcut (one rounding for the fused op); the pooled features. Each of
    those tensors' gradients is rounded too, the convolutions take bf16-rounded weights, and everything else
    (batch norm's math, the heads) stays exact."""
    def conv(m, x):
        return Round.apply(Bf16ActConv.apply(RoundGrad.apply(x), m.weight, m.stride, m.padding))

    def block(b, x):
        h = Round.apply(F.relu(b.bn1(conv(b.conv1, x))))
        h = b.bn2(conv(b.conv2, h))
        shortcut = Round.apply(b.downsample[1](conv(b.downsample[0], x))) if b.downsample is not None else x
        return Round.apply(F.relu(h + shortcut))

    def forward(x):
        h = Round.apply(F.relu(encoder.bn1(conv(encoder.conv1, Round.apply(x)))))
        for stage in range(4):
            for b in getattr(encoder, f"layer{stage + 1}"):
                h = block(b, h)
        return Round.apply(h.mean(dim=(2, 3)))

    encoder.forward = forward


def main(path, beta=0.0, temperature=0.1, predictor=True, target_network=True, conv_bf16=False,
         bf16_activations=False):
    global NOISE
    args = (beta, temperature, predictor, target_network, conv_bf16, bf16_activations)
    out, meta, loss = step(*args)
    if bf16_activations:
        spread = {}
        for run in range(SPREAD_RUNS):
            NOISE = (SPREAD_NOISE, torch.Generator().manual_seed(run + 1))
            noisy, _, _ = step(*args)
            NOISE = None
            def distance(a, b):
                return (a.double() - b.double()).norm().item() / max(b.double().norm().item(), 1e-30)

            for k, t in out.items():
                if k == "loss" or k.startswith("grad.") or k.startswith("updated."):
                    spread[k] = max(spread.get(k, 0.0), distance(noisy[k], t))
                if k.startswith("updated.online.") or k.startswith("updated.target."):
                    # the step's change of a parameter (new - old), which the test compares too
                    init = out["init." + k[len("updated."):]]
                    delta = "delta." + k[len("updated."):]
                    spread[delta] = max(spread.get(delta, 0.0), distance(noisy[k] - init, t - init))
        for k, d in spread.items():
            out["spread." + k] = torch.tensor([d], dtype=torch.float32)
        meta["spread_runs"], meta["spread_noise"] = SPREAD_RUNS, SPREAD_NOISE
    write_safetensors(path, out, meta)
    size = sum(t.numel() for t in out.values()) * 4
    print(f"wrote {path}: {len(out)} tensors, {size / 1e6:.2f} MB of data, loss {loss:.6f}")


def step(beta, temperature, predictor, target_network, conv_bf16, bf16_activations):
    """One reference step from the fixed seed: (tensors, metadata, loss)."""
    torch.manual_seed(SEED)
    online, target = Online().to(DT), Target().to(DT)
    randomise(online)
    randomise(target)
    online.train()
    target.train()
    out = {}
    for n, p in online.named_parameters():
        out["init.online." + n] = ours(n, p)
    for n, b in online.named_buffers():
        if "running" in n:
            out["init.online_stats." + n] = ours(n, b)
    for n, p in target.named_parameters():
        out["init.target." + n] = ours(n, p)
    for n, b in target.named_buffers():
        if "running" in n:
            out["init.target_stats." + n] = ours(n, b)
    momentum = {n: 0.01 * torch.randn_like(p) for n, p in online.named_parameters()}
    for n, m in momentum.items():
        out["init.momentum." + n] = ours(n, m)

    v1 = torch.rand(BATCH, 3, SIDE, SIDE, dtype=DT) * 2 - 1
    v2 = torch.rand(BATCH, 3, SIDE, SIDE, dtype=DT) * 2 - 1
    out["input.view1"] = ours("", v1)
    out["input.view2"] = ours("", v2)

    online_stats = BiasedRunningStats(online, "")
    target_stats = BiasedRunningStats(target, "")
    if conv_bf16:
        use_bf16_convolutions(online)
        use_bf16_convolutions(target)
    if bf16_activations:
        use_bf16_activations(online.encoder)
        use_bf16_activations(target.encoder)

    def project(v):
        return online.projector(online.encoder(v))

    o1, o2 = project(v1), project(v2)
    p1, p2 = (online.predictor(o1), online.predictor(o2)) if predictor else (o1, o2)
    if target_network:
        with torch.no_grad():
            z1 = target.projector(target.encoder(v1))
            z2 = target.projector(target.encoder(v2))
    else:
        z1, z2 = o1, o2  # gradients flow through the targets too (SimCLR)

    def unit(x):  # the official x * rsqrt(max(|x|^2, 1e-12)) normalisation
        return x * torch.rsqrt(torch.clamp((x * x).sum(-1, keepdim=True), min=1e-12))

    def regression(p, z):  # 2 - 2 cos
        return 2 - 2 * (unit(p) * unit(z)).sum(-1)

    def two_minus_infonce(p, z_other, z_same):
        n = p.shape[0]
        pu, ou, su = unit(p), unit(z_other), unit(z_same)
        positive = (pu * ou).sum(-1)
        same = (pu @ su.T / temperature).masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))
        lse = torch.logsumexp(torch.cat([pu @ ou.T / temperature, same], dim=1), dim=1)
        return 2 - (2.0 / n * positive.sum() - beta * 2.0 * temperature / n * lse.sum())

    if beta == 0:
        loss = (regression(p1, z2) + regression(p2, z1)).mean()
    else:
        loss = two_minus_infonce(p1, z2, z1) + two_minus_infonce(p2, z1, z2)
    loss.backward()
    out["loss"] = torch.tensor([loss.item()], dtype=torch.float32)

    with torch.no_grad():
        for n, p in online.named_parameters():
            g = p.grad if p.grad is not None else torch.zeros_like(p)  # the unused predictor: no gradient
            out["grad." + n] = ours(n, g)
            excluded = p.dim() == 1
            u = g if excluded else g + WD * p
            trust = 1.0
            if not excluded:
                pn, un = p.norm().item(), u.norm().item()
                trust = ETA * pn / un if pn > 0 and un > 0 else 1.0
            momentum[n] = MOMENTUM * momentum[n] + trust * u
            p.sub_(LR * momentum[n])
        online_params = dict(online.named_parameters())
        for n, t in target.named_parameters():
            if target_network:
                t.copy_(TAU * t + (1 - TAU) * online_params[n])
    for n, p in online.named_parameters():
        out["updated.online." + n] = ours(n, p)
        out["updated.momentum." + n] = ours(n, momentum[n])
    for n, p in target.named_parameters():
        out["updated.target." + n] = ours(n, p)
    for n, s in online_stats.stats.items():
        out["updated.online_stats." + n] = ours(n, s)
    for n, s in target_stats.stats.items():
        out["updated.target_stats." + n] = ours(n, s)

    meta = dict(batch=BATCH, side=SIDE, base_channels=BASE, projector_hidden=PROJ_HIDDEN,
                projection_dim=PROJ_DIM, predictor_hidden=PRED_HIDDEN, lr=LR, weight_decay=WD, eta=ETA,
                momentum=MOMENTUM, tau=TAU, torch=torch.__version__, beta=beta, temperature=temperature,
                predictor=int(predictor), target_network=int(target_network),
                stop_gradient=int(target_network), conv_bf16=int(conv_bf16),
                bf16_activations=int(bf16_activations))
    return out, meta, loss.item()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Writes the PyTorch reference state of one BYOL step.")
    parser.add_argument("output", help="the .safetensors fixture to write")
    parser.add_argument("--beta", type=float, default=0.0, help="weight of the InfoNCE term (0: BYOL)")
    parser.add_argument("--temperature", type=float, default=0.1, help="the InfoNCE term's alpha")
    parser.add_argument("--no-predictor", action="store_true", help="p = z")
    parser.add_argument("--no-target", action="store_true",
                        help="targets are the online projections, with gradients (SimCLR)")
    parser.add_argument("--conv-bf16", action="store_true",
                        help="the convolutions' products on bf16-rounded operands (train.precision = bf16)")
    parser.add_argument("--bf16-activations", action="store_true",
                        help="bf16 activations between the encoder's layers (train.precision = bf16 on a GPU)")
    a = parser.parse_args()
    main(a.output, a.beta, a.temperature, not a.no_predictor, not a.no_target, a.conv_bf16, a.bf16_activations)
