#!/usr/bin/env python3
"""BYOL training in plain PyTorch with kNN evaluation: the training-level reference for byol.cpp.

    /usr/bin/python3 tests/reference/byol_train.py --data data-local/cifar10 --steps 1000 [switches]

The recipe (docs/results.md, "The training-level reference"): ResNet-18 with the CIFAR stem at base width
--base, projector and predictor --hidden -> --dim, LARS (base lr 1.0 per 256 images, weight decay 1e-6,
eta 1e-3, momentum 0.9, biases and BN excluded), tau_base 0.99 (cosine to 1), 10 % linear warmup then
cosine, BYOL's augmentations at 32 px with ImageNet mean/std; kNN (k = 200, T = 0.1, cosine) on all
training and test images with BN in evaluation mode, at step 0 and at the end.

Each component can be switched to byol.cpp's convention, one at a time, to bisect a difference:
  --jitter torchvision|official   brightness x U(0.6, 1.4) and contrast around the grey mean (torchvision),
                                  or brightness + U(-0.4, 0.4) and contrast around each channel's mean (the
                                  official TF code, byol.cpp's augment.jitter = "official")
  --target-init copy|random       the target starts as a copy of the online network, or with its own draw
  --init torch|byolcpp            PyTorch's default initialisers or byol.cpp's (tests/reference/byol_torch.py)
  --views FILE                    train on a recorded view stream instead of augmenting here: a
                                  safetensors file with view1, view2 u8 [steps, batch, side, side, 3]
                                  (written by --save-views here, or by byol.cpp's byol_views tool)
  --save-views FILE               record this run's view stream (for byol.cpp's byol_views tool);
                                  with --record-only, record it without training
  --eval-encoder FILE             only evaluate an encoder exported by byol.cpp (torchvision names, OIHW)
                                  (--eval-baseline FILE: and its random-init baseline)

Collapse is watched as it happens: every --monitor-every steps, on a fixed batch of 512 test images, the
mean per-dimension standard deviation of the L2-normalised projections (1/sqrt(dim) for a spread-out
representation, 0 when collapsed) and the effective rank (exp of the entropy of the normalised singular
values) of the encoder's features. --json writes every number to a file.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import byol_torch as bt  # noqa: E402

# Per-channel mean and std of the input normalisation (--normalization; byol.cpp's data/augment.h).
NORMALIZATIONS = {"imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
                  "fashion-mnist": ([0.2860] * 3, [0.3530] * 3)}
MEAN = torch.tensor(NORMALIZATIONS["imagenet"][0]).view(1, 3, 1, 1)
STD = torch.tensor(NORMALIZATIONS["imagenet"][1]).view(1, 3, 1, 1)


# --- data ----------------------------------------------------------------------------------------------

def load_fashion_mnist(split, root="/usr/share/datasets/fashion-mnist"):
    """Debian's dataset-fashion-mnist (IDX, gzip) as u8 [N, 28, 28, 3] (grey in all three channels) and
    labels [N], as byol.cpp's fashion-mnist:<split> reads it."""
    import gzip
    prefix = "train" if split == "train" else "t10k"
    with gzip.open(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8).astype(np.int64)
    return torch.from_numpy(np.repeat(images[..., None], 3, axis=3).copy()), torch.from_numpy(labels)


def load_folder(root):
    """An image folder (<root>/<class>/*.jpg|png, classes sorted) as u8 [N, H, W, 3] and labels [N]."""
    from PIL import Image
    cache = os.path.join(root + ".npz")
    if os.path.exists(cache):
        z = np.load(cache)
        return torch.from_numpy(z["images"]), torch.from_numpy(z["labels"])
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    images, labels = [], []
    for c, name in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(root, name))):
            with Image.open(os.path.join(root, name, f)) as im:
                images.append(np.asarray(im.convert("RGB")))
            labels.append(c)
    images, labels = np.stack(images), np.array(labels, dtype=np.int64)
    try:
        np.savez(cache, images=images, labels=labels)
    except OSError:
        pass
    return torch.from_numpy(images), torch.from_numpy(labels)


DEVICE = torch.device("cpu")  # --device: where the networks train and the kNN runs


def normalise(u8_nhwc):
    """u8 NHWC images (on the CPU) -> normalised float NCHW on DEVICE."""
    x = u8_nhwc.permute(0, 3, 1, 2).float() / 255.0
    return ((x - MEAN) / STD).to(DEVICE)


def official_jitter(x, gen, strength=1.0):
    """The official code's colour jitter on a float [3, H, W] image in [0, 1], in a random order, each op
    clipped to [0, 1]: brightness + U(-0.4, 0.4), contrast x U(0.6, 1.4) around each channel's mean,
    saturation x U(0.8, 1.2), hue + U(-0.1, 0.1) turns (each range scaled by strength)."""
    import torchvision.transforms.functional as TF
    b = (torch.rand(1, generator=gen).item() * 2 - 1) * 0.4 * strength
    c = 1 + (torch.rand(1, generator=gen).item() * 2 - 1) * 0.4 * strength
    s = 1 + (torch.rand(1, generator=gen).item() * 2 - 1) * 0.2 * strength
    h = (torch.rand(1, generator=gen).item() * 2 - 1) * min(0.5, 0.1 * strength)
    for op in torch.randperm(4, generator=gen).tolist():
        if op == 0:
            x = (x + b).clamp(0, 1)
        elif op == 1:
            m = x.mean(dim=(1, 2), keepdim=True)
            x = ((x - m) * c + m).clamp(0, 1)
        elif op == 2:
            x = TF.adjust_saturation(x, s).clamp(0, 1)
        else:
            x = TF.adjust_hue(x, h).clamp(0, 1)
    return x


class Augment:
    """BYOL's two view distributions at 32 px (blur 1.0 / 0.1, solarize 0 / 0.2), on PIL images; crops of
    at least crop_min of the area (0.08 in the paper) and colour jitter ranges scaled by strength (byol.cpp's
    augment.crop_area_min and augment.jitter_strength)."""

    def __init__(self, side, jitter, seed, crop_min=0.08, strength=1.0):
        import torchvision.transforms as T
        self.gen = torch.Generator().manual_seed(seed + 12345)
        self.jitter, self.strength = jitter, strength
        I = T.InterpolationMode.BICUBIC
        self.crop = T.Compose([T.RandomResizedCrop(side, scale=(crop_min, 1.0), interpolation=I),
                               T.RandomHorizontalFlip()])
        s = strength
        self.tv_jitter = T.RandomApply([T.ColorJitter(0.4 * s, 0.4 * s, 0.2 * s, min(0.5, 0.1 * s))], p=0.8)
        self.gray = T.RandomGrayscale(0.2)
        self.blur = T.GaussianBlur(3, (0.1, 2.0))
        self.to_tensor = T.ToTensor()

    def view(self, img, blur_p, solarize_p):
        import torchvision.transforms.functional as TF
        img = self.crop(img)
        if self.jitter == "torchvision":
            img = self.to_tensor(self.tv_jitter(img))
        else:
            img = self.to_tensor(img)
            if torch.rand(1, generator=self.gen).item() < 0.8:
                img = official_jitter(img, self.gen, self.strength)
        img = TF.rgb_to_grayscale(img, 3) if torch.rand(1).item() < 0.2 else img
        if torch.rand(1).item() < blur_p:
            img = self.blur(img)
        if torch.rand(1).item() < solarize_p:
            img = torch.where(img >= 0.5, 1.0 - img, img)
        return (img.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0)  # u8 HWC, as recorded

    def pair(self, img):
        return self.view(img, 1.0, 0.0), self.view(img, 0.1, 0.2)


def write_views(path, v1, v2, meta):
    header, offset = {}, 0
    for name, t in (("view1", v1), ("view2", v2)):
        n = t.numel()
        header[name] = {"dtype": "U8", "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {k: str(v) for k, v in meta.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        f.write(v1.numpy().tobytes())
        f.write(v2.numpy().tobytes())
    os.replace(path + ".tmp", path)


def read_safetensors(path):
    dtypes = {"F32": np.float32, "U8": np.uint8, "F64": np.float64, "I64": np.int64}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype=dtypes[h["dtype"]]).reshape(h["shape"]))
    return out, header.get("__metadata__", {})


# --- evaluation ----------------------------------------------------------------------------------------

@torch.no_grad()
def features(encoder, images_u8, batch=500):
    was = encoder.training
    encoder.eval()
    out = torch.cat([encoder(normalise(images_u8[i:i + batch])) for i in range(0, len(images_u8), batch)])
    encoder.train(was)
    return out


@torch.no_grad()
def knn_top1(encoder, train, test, k=200, temperature=0.1, classes=10):
    ftr = F.normalize(features(encoder, train[0]), dim=1)
    fte = F.normalize(features(encoder, test[0]), dim=1)
    correct = 0
    train_labels, test_labels = train[1].to(DEVICE), test[1].to(DEVICE)
    for i in range(0, len(fte), 500):
        sim = fte[i:i + 500] @ ftr.T
        w, idx = sim.topk(k, dim=1)
        w = (w / temperature).exp()
        votes = torch.zeros(len(w), classes, device=DEVICE).scatter_add_(1, train_labels[idx], w)
        correct += (votes.argmax(1) == test_labels[i:i + 500]).sum().item()
    return 100.0 * correct / len(fte)


def effective_rank(x):
    s = torch.linalg.svdvals(x - x.mean(0))
    p = s / s.sum()
    p = p[p > 0]
    return math.exp(-(p * p.log()).sum().item())


@torch.no_grad()
def collapse_monitor(online, batch_u8):
    """Per-dimension std of the normalised projections (train-mode BN, as in a step) and the effective
    rank of the encoder's features (eval-mode BN)."""
    x = normalise(batch_u8)
    was = online.training
    online.train()
    state = {k: v.clone() for k, v in online.state_dict().items()}  # keep the running statistics
    z = F.normalize(online.projector(online.encoder(x)), dim=1)
    online.load_state_dict(state)
    online.train(was)
    feats = features(online.encoder, batch_u8)
    return z.std(0).mean().item(), effective_rank(feats), effective_rank(z)


def load_byolcpp_encoder(encoder, path):
    tensors, _ = read_safetensors(path)
    state = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items() if not k.startswith("fc.")}
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        sys.exit(f"{path}: missing {missing[:5]}, unexpected {unexpected[:5]}")


# --- training ------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data-local/cifar10",
                    help="folder with train/ and test/ image folders, or fashion-mnist (Debian's package)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--side", type=int, default=32)
    ap.add_argument("--base", type=int, default=16)
    ap.add_argument("--stem", choices=["cifar", "imagenet"], default="cifar")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--base-lr", type=float, default=1.0)
    ap.add_argument("--weight-decay", type=float, default=1e-6)
    ap.add_argument("--tau-base", type=float, default=0.99)
    ap.add_argument("--warmup-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--jitter", choices=["torchvision", "official"], default="torchvision")
    ap.add_argument("--jitter-strength", type=float, default=1.0, help="scales every colour-jitter range")
    ap.add_argument("--crop-min", type=float, default=0.08, help="smallest crop, as a fraction of the area")
    ap.add_argument("--normalization", choices=sorted(NORMALIZATIONS), default="imagenet")
    ap.add_argument("--target-init", choices=["copy", "random"], default="copy")
    ap.add_argument("--init", choices=["torch", "byolcpp"], default="torch")
    ap.add_argument("--views")
    ap.add_argument("--save-views")
    ap.add_argument("--record-only", action="store_true", help="with --save-views: record the views, train nothing")
    ap.add_argument("--eval-encoder")
    ap.add_argument("--eval-baseline", help="with --eval-encoder: a second encoder (the random-init baseline)")
    ap.add_argument("--train-subset", type=int, default=0, help="train on N random images (0: all)")
    ap.add_argument("--knn-train", type=int, default=0, help="kNN bank: N random training images (0: all)")
    ap.add_argument("--knn-test", type=int, default=0, help="kNN queries: N random test images (0: all)")
    ap.add_argument("--monitor-every", type=int, default=100)
    ap.add_argument("--json")
    ap.add_argument("--device", default="cpu",
                    help="cpu or cuda: where the networks train and the kNN runs (views are made on the CPU); "
                         "on cuda TF32 is allowed for convolutions and matrix products, as byol.cpp does")
    args = ap.parse_args()
    global MEAN, STD
    MEAN = torch.tensor(NORMALIZATIONS[args.normalization][0]).view(1, 3, 1, 1)
    STD = torch.tensor(NORMALIZATIONS[args.normalization][1]).view(1, 3, 1, 1)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    global DEVICE
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    if args.data == "fashion-mnist":
        train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    else:
        train = load_folder(os.path.join(args.data, "train"))
        test = load_folder(os.path.join(args.data, "test"))
    def subset(ds, n, seed):
        if n <= 0 or n >= len(ds[0]):
            return ds
        idx = torch.randperm(len(ds[0]), generator=torch.Generator().manual_seed(seed))[:n]
        return ds[0][idx], ds[1][idx]
    knn_train, knn_test = subset(train, args.knn_train, 1), subset(test, args.knn_test, 2)
    monitor_batch = subset(test, 512, 3)[0]
    record = {"args": vars(args), "monitor": []}

    if args.eval_encoder:
        enc = bt.ResNet18(args.base, args.stem)
        load_byolcpp_encoder(enc, args.eval_encoder)
        enc.to(DEVICE)
        acc = knn_top1(enc, knn_train, knn_test)
        if args.eval_baseline:
            base = bt.ResNet18(args.base, args.stem)
            load_byolcpp_encoder(base, args.eval_baseline)
            base.to(DEVICE)
            record["knn_init"] = knn_top1(base, knn_train, knn_test)
            print(f"kNN top-1 of the baseline {args.eval_baseline}: {record['knn_init']:.2f} %")
        print(f"kNN top-1 of {args.eval_encoder}: {acc:.2f} %  (effective rank {effective_rank(features(enc, monitor_batch)):.2f})")
        record["knn"] = acc
        if args.json:
            json.dump(record, open(args.json, "w"), indent=1)
        return 0

    gen = torch.Generator().manual_seed(args.seed)
    online = bt.Online(args.base, args.hidden, args.dim, args.hidden, args.stem)
    target = bt.Target(args.base, args.hidden, args.dim, args.stem)
    if args.init == "byolcpp":
        bt.byolcpp_init_(online, gen)
        bt.byolcpp_init_(target, gen)
    if args.target_init == "copy":
        target.load_state_dict({k: v for k, v in online.state_dict().items() if not k.startswith("predictor.")})
    online.to(DEVICE), target.to(DEVICE)
    online.train(), target.train()

    knn0 = None if args.record_only else knn_top1(online.encoder, knn_train, knn_test)
    print(f"step 0: kNN {knn0:.2f} %" if knn0 is not None else "recording views", flush=True)
    record["knn_init"] = knn0

    warmup = int(round(args.warmup_fraction * args.steps))
    lars = bt.Lars(online.parameters(), args.weight_decay, 1e-3, 0.9)
    views = None
    if args.views:
        views, _ = read_safetensors(args.views)
        want = [args.batch, args.side, args.side, 3]
        if views["view1"].shape[0] < args.steps or list(views["view1"].shape[1:]) != want:
            sys.exit(f"{args.views}: view1 is {list(views['view1'].shape)}, need [>= {args.steps}, {', '.join(map(str, want))}]")
    aug = Augment(args.side, args.jitter, args.seed, args.crop_min, args.jitter_strength)
    from PIL import Image
    pool = subset(train, args.train_subset, 4)[0]
    n_train = len(pool)
    order, pos = torch.randperm(n_train, generator=gen), 0
    rec1 = torch.empty(args.steps, args.batch, args.side, args.side, 3, dtype=torch.uint8) if args.save_views else None
    rec2 = torch.empty_like(rec1) if args.save_views else None
    t0 = time.time()
    for step in range(args.steps):
        if views is not None:
            u1, u2 = torch.from_numpy(np.array(views["view1"][step])), torch.from_numpy(np.array(views["view2"][step]))
        else:
            if pos + args.batch > n_train:
                order, pos = torch.randperm(n_train, generator=gen), 0
            idx = order[pos:pos + args.batch]
            pos += args.batch
            pairs = [aug.pair(Image.fromarray(pool[i].numpy())) for i in idx.tolist()]
            u1 = torch.stack([p[0] for p in pairs])
            u2 = torch.stack([p[1] for p in pairs])
        if rec1 is not None:
            rec1[step], rec2[step] = u1, u2
        if args.record_only:
            continue
        x1, x2 = normalise(u1), normalise(u2)
        online.zero_grad(set_to_none=False)
        p1, p2 = online(x1), online(x2)
        with torch.no_grad():
            z1, z2 = target(x1), target(x2)
        loss = bt.byol_loss(p1, z2, p2, z1)
        loss.backward()
        lars.step(bt.lr_at(step, args.steps, warmup, args.base_lr, args.batch))
        bt.ema_(target, online, bt.tau_at(step, args.steps, args.tau_base))
        if (step + 1) % args.monitor_every == 0 or step == 0:
            std, rank_f, rank_z = collapse_monitor(online, monitor_batch)
            record["monitor"].append({"step": step + 1, "loss": loss.item(), "proj_std": std,
                                      "feature_rank": rank_f, "projection_rank": rank_z})
            print(f"step {step + 1}: loss {loss.item():.4f}  projection std {std:.4f} (1/sqrt(d) = "
                  f"{1 / math.sqrt(args.dim):.4f})  effective rank features {rank_f:.2f} projections {rank_z:.2f}"
                  f"  {(step + 1) * args.batch / (time.time() - t0):.0f} img/s", flush=True)
    if rec1 is not None:
        write_views(args.save_views, rec1, rec2, {"steps": args.steps, "batch": args.batch, "side": args.side,
                                                   "jitter": args.jitter, "seed": args.seed})
    if args.record_only:
        print(f"recorded {args.steps} batches of {args.batch} view pairs in {args.save_views}")
        return 0
    knn1 = knn_top1(online.encoder, knn_train, knn_test)
    record["knn_final"] = knn1
    print(f"kNN top-1: {knn0:.2f} % at random init -> {knn1:.2f} % after {args.steps} steps ({knn1 - knn0:+.2f})")
    if args.json:
        json.dump(record, open(args.json, "w"), indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
