#!/usr/bin/env python3
"""Loads byol.cpp's exported encoders into torchvision's ResNets and compares their features.

    check_export_torchvision.py EXPORT_SAMPLE_BINARY WORK_DIR

For ResNet-18 and ResNet-50: export_sample writes the encoder (torchvision names, OIHW) and the
features byol.cpp computes for an input batch in evaluation mode; this script loads the file with
torchvision.models.resnetXX().load_state_dict(..., strict=False), requires that only fc.* is missing
and nothing is unexpected, and that torchvision's features (fc replaced by identity) match ours. Then
every other shape byol-pretrain exports (the CIFAR stem, other base widths, the width multiplier) through
scripts/byol_encoder.py's load_encoder, which rebuilds the network from the file's encoder_config.
Exits 77 (ctest: skipped) when torch/torchvision are not importable. Reads the files with the
safetensors package when present, else with the few lines of parsing below.
"""
import json
import os
import struct
import subprocess
import sys

try:
    import numpy as np
    import torch
    import torchvision
except ImportError as e:
    print(f"SKIPPED torchvision export check: {e} (apt-get install python3-torchvision)")
    sys.exit(77)


def load(path):
    try:
        from safetensors.torch import load_file
        return load_file(path)
    except ImportError:
        pass
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        b, e = info["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[b:e], dtype="<f4").copy()).reshape(info["shape"])
    return out


def main(tool, work):
    torch.set_num_threads(2)
    for depth in (18, 50):
        subprocess.run([tool, str(depth), work], check=True)
        state = load(f"{work}/resnet{depth}.safetensors")
        io = load(f"{work}/resnet{depth}_io.safetensors")
        model = getattr(torchvision.models, f"resnet{depth}")()
        result = model.load_state_dict(state, strict=False)
        missing = sorted(k for k in result.missing_keys if not k.endswith("num_batches_tracked"))
        assert missing == ["fc.bias", "fc.weight"], f"resnet{depth}: missing {missing}"
        assert not result.unexpected_keys, f"resnet{depth}: unexpected {result.unexpected_keys}"
        model.fc = torch.nn.Identity()
        model.eval()
        with torch.no_grad():
            theirs = model(io["input"])
        ours = io["features"]
        err = ((theirs - ours).norm() / theirs.norm()).item()
        print(f"resnet{depth}: {len(state)} tensors loaded (only fc.* missing); features rel. error {err:.2e}")
        assert err < 1e-4, f"resnet{depth}: features differ from torchvision's by {err}"

    # The shapes torchvision has no constructor for: the README's main job (base 16, ImageNet stem), the
    # CIFAR stem, the width multiplier, a deeper basic-block network.
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
    from byol_encoder import load_encoder
    for depth, stem, base, width in ((18, "imagenet", 16, 1), (18, "cifar", 16, 1), (50, "cifar", 8, 2),
                                     (34, "imagenet", 8, 1)):
        name = f"resnet{depth}_{stem}_base{base}_x{width}"
        subprocess.run([tool, str(depth), work, stem, str(base), str(width), name], check=True)
        model = load_encoder(f"{work}/{name}.safetensors")
        io = load(f"{work}/{name}_io.safetensors")
        with torch.no_grad():
            theirs = model(io["input"])
        ours = io["features"]
        assert theirs.shape == ours.shape, f"{name}: features {tuple(theirs.shape)} vs ours {tuple(ours.shape)}"
        err = ((theirs - ours).norm() / theirs.norm()).item()
        print(f"{name}: loaded by scripts/byol_encoder.py; features rel. error {err:.2e}")
        assert err < 1e-4, f"{name}: features differ from PyTorch's by {err}"


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
