#!/usr/bin/env python3
"""Checks scripts/scaling_model.py: its ResNet-50 parameter and batch-norm counts against torchvision's
own resnet50 (fc removed), the head sizes against the formula of models/mlp.h, and the model's
invariants (one GPU is 100 % efficient; efficiency falls as GPUs are added at a fixed global batch).
Exit 77 (skipped) where torch/torchvision are not importable."""
import importlib.util
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("scaling_model", os.path.join(here, "..", "..", "scripts",
                                                                            "scaling_model.py"))
model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(model)

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


try:
    import torch
    import torchvision
except ImportError:
    print("SKIPPED: torch/torchvision not importable (apt-get install python3-torchvision)")
    sys.exit(77)

tv = torchvision.models.resnet50()
tv.fc = torch.nn.Identity()
tv_params = sum(p.numel() for p in tv.parameters())
tv_bn = [m.num_features for m in tv.modules() if isinstance(m, torch.nn.BatchNorm2d)]
params, bn = model.resnet50_counts()
check(params == tv_params, f"ResNet-50 parameters: model {params}, torchvision {tv_params}")
check(bn == tv_bn, f"ResNet-50 BN layers: model {len(bn)}, torchvision {len(tv_bn)} (channels in order)")

head = torch.nn.Sequential(torch.nn.Linear(2048, 4096), torch.nn.BatchNorm1d(4096), torch.nn.ReLU(),
                           torch.nn.Linear(4096, 256, bias=False))
check(model.head_counts(2048)[0] == sum(p.numel() for p in head.parameters()), "projector parameters")

net = model.network()
check(net["online_params"] == params + model.head_counts(2048)[0] + model.head_counts(256)[0],
      "online = encoder + projector + predictor")
check(len(net["bn_messages"]) == 2 * (len(bn) + 2) + (len(bn) + 1),
      "synced-BN all-reduce count: one per online BN layer and pass, one per target BN layer (views together)")
for key in ("nvlink", "ib"):
    fabric = model.FABRICS[key]
    effs = [model.step(n, 1000.0, fabric, net)["eff"] for n in (1, 2, 4, 8, 16, 64)]
    check(abs(effs[0] - 1.0) < 1e-12, f"{key}: one GPU is 100 % efficient")
    check(all(a > b for a, b in zip(effs, effs[1:])), f"{key}: efficiency falls as GPUs are added")
    s = model.step(8, 1000.0, fabric, net)
    check(abs(s["t"] - (s["t_c"] + s["t_bn"] + s["t_g"])) < 1e-15, f"{key}: step = compute + BN + gradients")
sys.exit(1 if failures else 0)
