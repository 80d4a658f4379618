#!/usr/bin/env python3
"""Step time of BYOL ResNet-50 (global batch 4096) on n GPUs, from a measured single-GPU throughput and
NCCL's published all-reduce figures. docs/scaling.md explains the model; this prints its tables.

    python3 scripts/scaling_model.py --images-per-s 900            # a measured single-GPU BYOL step rate
    python3 scripts/scaling_model.py --from-log STEP_BENCH_LOG      # byol_step_bench --device cuda output
    python3 scripts/scaling_model.py --sweep                         # the model over a range of rates

Per step and GPU (per-GPU batch b = 4096 / n):
  compute       T_c = b / R                        R: single-GPU BYOL images/s (ResNet-50, 224x224)
  synced BN     T_bn = N_bn * (alpha + m / algbw)   N_bn all-reduces of m bytes, latency-bound, on the
                                                    critical path (forward and backward wait for them)
  gradients     T_g = exposed part of the bucketed gradient all-reduce: the last bucket always, the
                rest only where it outlasts the backward pass it overlaps (T_bwd = share_bwd * T_c)
  step          T(n) = T_c + T_bn + T_g,  efficiency E(n) = T_c(n = 1) / (n * T(n))
algbw = busbw * n / (2 (n - 1)) (nccl-tests' definition of bus bandwidth for all-reduce).
Only the standard library is used.
"""
import argparse
import math
import re
import sys

GLOBAL_BATCH = 4096
BUCKET_BYTES = 25 << 20  # DataParallel's default bucket (byol/distributed.h)


def resnet50_counts():
    """Parameters and batch-norm layers of ResNet-50 without fc (torchvision layout), and the channel
    count of every BN layer."""
    params, bn_channels = 0, []

    def conv(cin, cout, k):
        nonlocal params
        params += cin * cout * k * k

    def bn(c):
        nonlocal params
        params += 2 * c
        bn_channels.append(c)

    conv(3, 64, 7)
    bn(64)
    cin = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for i in range(blocks):
            cout = width * 4
            conv(cin, width, 1), bn(width)
            conv(width, width, 3), bn(width)
            conv(width, cout, 1), bn(cout)
            if i == 0:
                conv(cin, cout, 1), bn(cout)
            cin = cout
    return params, bn_channels


def head_counts(d_in, hidden=4096, d_out=256):
    """Linear(bias) -> BN -> ReLU -> Linear(no bias): parameters and the BN's channels."""
    return d_in * hidden + hidden + 2 * hidden + hidden * d_out, [hidden]


def network():
    enc_params, enc_bn = resnet50_counts()
    proj_params, proj_bn = head_counts(2048)
    pred_params, pred_bn = head_counts(256)
    online_params = enc_params + proj_params + pred_params
    online_bn = enc_bn + proj_bn + pred_bn
    target_bn = enc_bn + proj_bn
    # Synced BN: forward sends [count, sum[C], sum_sq[C]] (f64), backward [sum dy, sum dy*xhat] (f64),
    # for both views in one message (byol::Learner runs [v1; v2] in one pass, BN in two groups).
    # Online: forward and backward; target: forward only.
    messages = []
    for c in online_bn:
        messages += [2 * 8 * (2 * c + 1), 2 * 8 * 2 * c]
    for c in target_bn:
        messages += [2 * 8 * (2 * c + 1)]
    return dict(enc_params=enc_params, online_params=online_params, grad_bytes=4 * online_params,
                online_bn=len(online_bn), target_bn=len(target_bn), bn_messages=messages)


# Fabrics: large-message bus bandwidth (GB/s) and small-message latency (s), with their sources.
FABRICS = {
    "nvlink": dict(
        name="one node, 8x H100 SXM, NVLink 4 + NVSwitch (NVLink SHARP)",
        busbw=480e9, alpha=10e-6, max_gpus=8,
        source="busbw ~480 GB/s with NVLS, ~370 GB/s ring (NVIDIA/nccl-tests#212); small all-reduces "
               "~6 us on 2 GPUs, growing with the GPU count (NVIDIA/nccl#1259): 10 us assumed for 8"),
    "ib": dict(
        name="nodes of 8x H100, one 400 Gb/s NDR InfiniBand NIC per GPU",
        busbw=8 * 46e9, alpha=46e-6, max_gpus=None,
        source="46-48 GB/s per NDR NIC in ring all-reduce (NVIDIA/nccl-tests#290), 8 NICs per node -> "
               "~368 GB/s bus bandwidth, NIC-bound; ~46 us for small all-reduces across 2 nodes "
               "(NVIDIA/nccl#1244)"),
}


def allreduce_time(nbytes, n, fabric):
    if n == 1:
        return 0.0
    algbw = fabric["busbw"] * n / (2 * (n - 1))
    return fabric["alpha"] + nbytes / algbw


def step(n, rate, fabric, net, share_bwd=0.5):
    b = GLOBAL_BATCH / n
    t_c = b / rate
    t_bn = sum(allreduce_time(m, n, fabric) for m in net["bn_messages"])
    buckets = [BUCKET_BYTES] * (net["grad_bytes"] // BUCKET_BYTES)
    if net["grad_bytes"] % BUCKET_BYTES:
        buckets.append(net["grad_bytes"] % BUCKET_BYTES)
    t_buckets = [allreduce_time(x, n, fabric) for x in buckets]
    # All but the last bucket overlap the backward pass; the last starts when backward ends.
    overlapped = sum(t_buckets[:-1])
    t_g = (t_buckets[-1] if t_buckets else 0.0) + max(0.0, overlapped - share_bwd * t_c)
    t = t_c + t_bn + t_g
    return dict(n=n, b=b, t_c=t_c, t_bn=t_bn, t_g=t_g, t=t, eff=(GLOBAL_BATCH / rate) / (n * t))


def table(rate, net, out):
    out.write(f"Single-GPU BYOL step rate R = {rate:.0f} images/s (ResNet-50, 224x224); global batch "
              f"{GLOBAL_BATCH}.\n\n")
    for key in ("nvlink", "ib"):
        f = FABRICS[key]
        out.write(f"{f['name']} (busbw {f['busbw'] / 1e9:.0f} GB/s, small-message latency "
                  f"{f['alpha'] * 1e6:.0f} us)\n\n")
        out.write("| GPUs | batch/GPU | compute | synced BN | gradients (exposed) | step | images/s | efficiency |\n")
        out.write("| --- | --- | --- | --- | --- | --- | --- | --- |\n")
        counts = [1, 2, 4, 8] if key == "nvlink" else [16, 32, 64, 128, 256, 512]
        for n in counts:
            s = step(n, rate, f, net)
            out.write(f"| {n} | {s['b']:.0f} | {s['t_c'] * 1e3:.1f} ms | {s['t_bn'] * 1e3:.2f} ms | "
                      f"{s['t_g'] * 1e3:.2f} ms | {s['t'] * 1e3:.1f} ms | {GLOBAL_BATCH / s['t']:.0f} | "
                      f"{100 * s['eff']:.1f} % |\n")
        out.write("\n")


def rate_from_log(path):
    text = open(path).read()
    found = re.findall(r"ResNet-50 .*? ([0-9.]+) images/s", text)
    if not found:
        sys.exit(f"scaling_model.py: no 'ResNet-50 ... images/s' line in {path}")
    return float(found[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--images-per-s", type=float, help="measured single-GPU BYOL step rate, ResNet-50 224px")
    g.add_argument("--from-log", help="byol_step_bench --device cuda output with a ResNet-50 line")
    g.add_argument("--sweep", action="store_true", help="efficiency over a range of single-GPU rates")
    ap.add_argument("--counts", action="store_true", help="print the network's counts and exit")
    a = ap.parse_args()
    net = network()
    sys.stdout.write(
        f"Network: online {net['online_params'] / 1e6:.2f} M parameters ({net['grad_bytes'] / 2**20:.0f} MiB of "
        f"float32 gradients, {math.ceil(net['grad_bytes'] / BUCKET_BYTES)} buckets of 25 MiB); "
        f"{len(net['bn_messages'])} synced-BN all-reduces per step ({net['online_bn']} online BN layers x forward + "
        f"backward, {net['target_bn']} target BN layers x forward; both views in each), "
        f"{sum(net['bn_messages']) / 1e6:.2f} MB in all.\n\n")
    if a.counts:
        return
    if a.sweep:
        sys.stdout.write("| single-GPU images/s | 8 GPUs NVLink | 64 GPUs IB | 256 GPUs IB | 512 GPUs IB |\n")
        sys.stdout.write("| --- | --- | --- | --- | --- |\n")
        for rate in (250, 500, 1000, 2000, 4000):
            cells = [step(8, rate, FABRICS["nvlink"], net)["eff"]] + [
                step(n, rate, FABRICS["ib"], net)["eff"] for n in (64, 256, 512)]
            sys.stdout.write(f"| {rate} | " + " | ".join(f"{100 * e:.1f} %" for e in cells) + " |\n")
        return
    rate = a.images_per_s if a.images_per_s else rate_from_log(a.from_log)
    if rate <= 0:
        sys.exit("scaling_model.py: the single-GPU rate must be positive")
    table(rate, net, sys.stdout)


if __name__ == "__main__":
    main()
