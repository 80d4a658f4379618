#!/usr/bin/env python3
"""byol.cpp's exported encoders in PyTorch: any depth, stem, base width and width multiplier.

    import sys; sys.path.insert(0, "scripts")          # from the project root
    from byol_encoder import load_encoder
    model = load_encoder("runs/x/encoder.safetensors")  # a torchvision ResNet, fc = Identity, eval mode
    features = model(images)                            # images: float NCHW, normalised as in training

    python3 scripts/byol_encoder.py ENCODER.safetensors  # prints the configuration and the tensor count

byol-pretrain's encoder.safetensors (and byol.cpp's export_encoder) hold the ResNet with torchvision's
tensor names and OIHW filters, and its shape as JSON in the metadata key "encoder_config" (depth, width,
stem, base_channels, blocks). A standard ResNet (ImageNet stem, base 64, width 1) loads into
torchvision.models.resnetXX() directly; every other shape needs the network rebuilt to match, which
build_resnet does with torchvision's own ResNet class and blocks:
  - base_channels x width channels in the stem and the first stage, doubling per stage (byol.cpp's width
    multiplies every layer, stem included, as in the BYOL and SimCLR papers' ResNet-50 (2x); torchvision's
    wide_resnet50_2 widens only the bottlenecks' inner convolutions, a different network);
  - the CIFAR stem: a 3x3 stride-1 convolution and no max pool;
  - blocks per stage from the config (the depth's standard ones when it lists none).
Needs torch and torchvision (Debian: python3-torchvision); reads the file with the safetensors package
when present, else with the few lines below.
"""
import json
import struct
import sys

import torch
import torch.nn as nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

STANDARD_BLOCKS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3],
                   152: [3, 8, 36, 3], 200: [3, 24, 36, 3]}


def read_safetensors(path):
    """(tensors, metadata) of a safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dtypes = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "BF16": torch.bfloat16}
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[b:e]), dtype=dtypes[info["dtype"]]) if e > b else \
            torch.empty(0, dtype=dtypes[info["dtype"]])
        tensors[name] = t.reshape(info["shape"])
    return tensors, header.get("__metadata__", {})


def build_resnet(config):
    """A torchvision ResNet (fc = Identity) shaped as byol.cpp's encoder_config (a dict or its JSON)."""
    if isinstance(config, str):
        config = json.loads(config)
    depth = int(config["depth"])
    if depth not in STANDARD_BLOCKS:
        raise ValueError(f"encoder_config: depth {depth}, expected one of {sorted(STANDARD_BLOCKS)}")
    blocks = list(config.get("blocks") or STANDARD_BLOCKS[depth])
    block = Bottleneck if depth >= 50 else BasicBlock
    base = int(config.get("base_channels", 64)) * int(config.get("width", 1))
    model = ResNet(block, blocks)
    model.inplanes = base  # _make_layer grows the network from here, as ResNet.__init__ does from 64
    if config.get("stem", "imagenet") == "cifar":
        model.conv1 = nn.Conv2d(3, base, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    else:
        model.conv1 = nn.Conv2d(3, base, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(base)
    model.layer1 = model._make_layer(block, base, blocks[0])
    model.layer2 = model._make_layer(block, base * 2, blocks[1], stride=2)
    model.layer3 = model._make_layer(block, base * 4, blocks[2], stride=2)
    model.layer4 = model._make_layer(block, base * 8, blocks[3], stride=2)
    model.fc = nn.Identity()
    return model


def load_encoder(path, config=None):
    """The encoder in `path` as a torchvision ResNet in evaluation mode, fc = Identity (the features).
    config: the shape, for a file without "encoder_config" metadata (a plain torchvision export)."""
    try:
        from safetensors.torch import load_file
        from safetensors import safe_open
        tensors = load_file(path)
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
    except ImportError:
        tensors, meta = read_safetensors(path)
    if config is None:
        if "encoder_config" not in meta:
            raise ValueError(f"{path}: no 'encoder_config' metadata; pass config= (depth, width, stem, base_channels)")
        config = meta["encoder_config"]
    model = build_resnet(config)
    state = {k: v for k, v in tensors.items() if not k.startswith("fc.")}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise ValueError(f"{path}: does not fit {config}: missing {missing[:5]}, unexpected "
                         f"{result.unexpected_keys[:5]}")
    return model.eval()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    m = load_encoder(sys.argv[1])
    _, meta = read_safetensors(sys.argv[1])
    print(f"{sys.argv[1]}: {meta.get('encoder_config')}, {len(m.state_dict())} tensors, "
          f"{sum(p.numel() for p in m.parameters())} parameters")
