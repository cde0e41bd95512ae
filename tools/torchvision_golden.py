#!/usr/bin/python3
"""Golden files for rnc's torchvision compatibility, and the reverse check.

    tools/torchvision_golden.py --arch resnet18 --out tests/golden/tv_resnet18.golden
    tools/torchvision_golden.py --arch resnet50 --batch 1 --out tests/golden/tv_resnet50.golden

Builds torchvision's model (python3-torchvision, random weights, eval mode),
sets every entry of its state_dict from a generator that tests/test_torchvision.c
reproduces (the weights are not stored: ResNet-50 has 25M of them), runs a
batch of generated images through it in float64, and writes the state_dict's
names, dtypes and shapes in order and the logits.  The C test writes the same
weights as torchvision's safetensors file, loads them into rnc's network and
must give these logits.  Needs python3-torch; CI reads the committed files.

    tools/torchvision_golden.py --check WEIGHTS.safetensors --arch resnet18 --num-classes 10 \
        --logits rnc_logits.txt

The reverse: loads a safetensors file written by rnc (NET export) into
torchvision's model with load_state_dict(strict=True), runs the images
listed in the logits file's seed through it and compares with the logits
rnc computed; exit status 0 when they agree to --tol, 1 when not, 77 when
PyTorch is not installed (CTest's skip).

The generator (golden_mix is SplitMix64's finalizer, as in tools/torch_golden.py):
    u(t, i) = (mix((seed << 48) ^ (t << 32) ^ i) >> 11) * 2^-53 - 0.5,  in [-0.5, 0.5)
for element i (row-major, torchvision's layout) of state_dict entry t, and
t = 0xffff for the images (NHWC, rnc's layout):
    conv weights   2 u sqrt(6 / fan_in)     (He-uniform: variance 2 / fan_in)
    BN weight      1 + 0.4 u       BN bias, running_mean   0.4 u
    BN running_var 1 + 0.8 u       fc.weight 2 u sqrt(3 / in)    fc.bias 0.4 u
    images         2 u
each rounded to float32; num_batches_tracked is 0.
"""
import argparse
import json
import struct
import sys

MASK = (1 << 64) - 1
IMAGES = 0xFFFF


def values(np, seed, t, count):
    """u(t, i) for i < count, as float64 (numpy: uint64 arithmetic wraps)."""
    i = np.arange(count, dtype=np.uint64)
    x = np.uint64((seed << 48) & MASK) ^ np.uint64(t << 32) ^ i
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * 2.0 ** -53 - 0.5


def tensor_values(np, seed, t, name, shape):
    count = 1
    for d in shape:
        count *= d
    u = values(np, seed, t, count)
    if len(shape) == 4:
        fan_in = shape[1] * shape[2] * shape[3]
        v = 2 * u * (6.0 / fan_in) ** 0.5
    elif name.endswith("fc.weight"):
        v = 2 * u * (3.0 / shape[1]) ** 0.5
    elif name.endswith("running_var"):
        v = 1 + 0.8 * u
    elif name.endswith(".weight"):
        v = 1 + 0.4 * u
    else:
        v = 0.4 * u
    return v.astype(np.float32).astype(np.float64).reshape(shape)


def images_nchw(np, torch, seed, batch, h, w, c):
    u = values(np, seed, IMAGES, batch * h * w * c)
    x = (2 * u).astype(np.float32).astype(np.float64).reshape(batch, h, w, c)
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


def build(arch, num_classes):
    import torchvision
    return getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)


def read_safetensors(path, torch):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    dtypes = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        t = torch.frombuffer(bytearray(data[base + b:base + end]), dtype=dtypes[e["dtype"]])
        out[name] = t.reshape(e["shape"]).clone()
    return out


def golden(a):
    import numpy as np
    import torch
    model = build(a.arch, a.num_classes).double().eval()
    sd = model.state_dict()
    names = list(sd.keys())
    with torch.no_grad():
        for t, name in enumerate(names):
            if name.endswith("num_batches_tracked"):
                sd[name].zero_()
                continue
            sd[name].copy_(torch.from_numpy(tensor_values(np, a.seed, t, name, list(sd[name].shape))))
        x = images_nchw(np, torch, a.seed, a.batch, a.size, a.size, 3)
        logits = model(x)
        # what float32 arithmetic can be held to: the same model in float32
        logits32 = model.float()(x.float()).double()
        err32 = ((logits32 - logits).norm() / logits.norm()).item()
    print(f"{a.arch}: {len(names)} state_dict entries, logits norm {logits.norm().item():.4g}, "
          f"float32 vs float64 relative error {err32:.2e}")
    with open(a.out, "w") as f:
        f.write(f"rnc-tv-golden 1 {a.arch} classes {a.num_classes} batch {a.batch} "
                f"input {a.size}x{a.size}x3 seed {a.seed}\n")
        f.write(f"tensors {len(names)}\n")
        for name in names:
            v = sd[name]
            dt = "I64" if v.dtype == torch.int64 else "F32"
            f.write(f"{name} {dt} {v.dim()} {' '.join(str(d) for d in v.shape)}\n".replace("  ", " "))
        flat = logits.flatten().tolist()
        f.write(f"logits {len(flat)}\n")
        for i in range(0, len(flat), 8):
            f.write(" ".join(f"{v:.10g}" for v in flat[i:i + 8]) + "\n")


def check(a):
    """rnc's exported weights in torchvision's model against rnc's logits."""
    try:
        import numpy as np
        import torch
        import torchvision  # noqa: F401
    except ImportError as e:
        print(f"skipped: {e} (the reverse check needs python3-torch and python3-torchvision)")
        return 77
    with open(a.logits) as f:
        head = f.readline().split()   # rnc-logits SEED BATCH H W C CLASSES
        seed, batch, h, w, c, classes = (int(v) for v in head[1:7])
        rnc = torch.tensor([float(v) for v in f.read().split()], dtype=torch.float64)
    model = build(a.arch, classes).double().eval()
    sd = read_safetensors(a.check, torch)
    missing = model.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in sd.items()},
                                    strict=True)
    with torch.no_grad():
        x = images_nchw(np, torch, seed, batch, h, w, c)
        logits = model(x).flatten()
    err = ((logits - rnc).norm() / logits.norm()).item()
    print(f"{a.check} in torchvision's {a.arch}(num_classes={classes}): {missing}; "
          f"logits against rnc's: relative error {err:.3g} (tolerance {a.tol:g})")
    return 0 if err <= a.tol else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", required=True, help="a torchvision ResNet: resnet18, resnet34, resnet50, ...")
    ap.add_argument("--num-classes", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--out")
    ap.add_argument("--check", metavar="WEIGHTS", help="the reverse check of a safetensors file rnc exported")
    ap.add_argument("--logits", help="with --check: rnc's logits (test_torchvision --export writes them)")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    if a.check:
        sys.exit(check(a))
    if not a.out:
        ap.error("--out FILE (or --check)")
    golden(a)


if __name__ == "__main__":
    main()
