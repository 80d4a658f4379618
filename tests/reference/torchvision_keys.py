#!/usr/bin/env python3
"""Writes the state_dict keys and shapes of torchvision's ResNets (without fc and num_batches_tracked)
to tests/fixtures/torchvision_resnet_keys.json, for the C++ test that checks byol.cpp's encoder names,
OIHW export shapes and parameter counts against torchvision's own.

    /usr/bin/python3 tests/reference/torchvision_keys.py tests/fixtures/torchvision_resnet_keys.json

Needs Debian's python3-torchvision.
"""
import json
import sys

import torchvision

out = {}
for depth in (18, 34, 50, 101, 152):
    model = getattr(torchvision.models, f"resnet{depth}")()
    keys = [[k, list(v.shape)] for k, v in model.state_dict().items()
            if not k.startswith("fc.") and not k.endswith("num_batches_tracked")]
    params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("fc."))
    out[f"resnet{depth}"] = {"keys": keys, "encoder_parameters": params, "torchvision": torchvision.__version__}
with open(sys.argv[1], "w") as f:
    json.dump(out, f, separators=(",", ":"))
print(f"wrote {sys.argv[1]}: " + ", ".join(f"{k} {len(v['keys'])} keys {v['encoder_parameters']} params" for k, v in out.items()))
