#!/usr/bin/python3
"""Golden files for rnc: the same network, weights and input run through PyTorch.

    tools/torch_golden.py --rnc build/rnc --spec tests/specs/tiny_a.spec --batch 4 \
        --out tests/golden/tiny_a.golden

Builds the network from `rnc --dump-graph` (so the graph is the one rnc
compiles, op for op), runs one training step in float64 with random weights and
input, and writes everything a C test needs to check rnc's forward and
backward: parameters, input, labels, loss, logits, parameter gradients, BN
running statistics after the step, and evaluation-mode logits after it.
Needs python3-torch (Debian); CI does not, it reads the committed files.

--compact (format 2) keeps files small for wide networks: the parameters are
not listed but generated from the seed by golden_param() (tests/golden.c has
the same generator), and each parameter gradient is given by PROJECTIONS
projections onto pseudo-random +-1 vectors and SAMPLES entries at
pseudo-random indices, both also from the seed.  Projections onto random
signs keep the relative L2 error of the whole tensor (Johnson-Lindenstrauss),
so a wrong kernel shows as it does in the full format.
"""
import argparse
import math
import struct
import subprocess

import torch
import torch.nn.functional as F


def parse_dump(text):
    head, params, state, ops = None, [], [], []
    for line in text.splitlines():
        f = line.split()
        if f[0] == "network":
            head = {"name": f[1], "h": int(f[3]), "w": int(f[4]), "c": int(f[5]), "classes": int(f[7]),
                    "batch": int(f[9]), "eps": float(f[11]), "momentum": float(f[13])}
        elif f[0] in ("param", "state"):
            rank = int(f[3])
            entry = (f[1], int(f[2]), [int(v) for v in f[4:4 + rank]])
            (params if f[0] == "param" else state).append(entry)
        elif f[0] == "op":
            op = {"kind": f[1], "name": f[2]}
            for kv in f[3:]:
                k, v = kv.split("=", 1)
                op[k] = int(v) if k in ("k", "stride", "pad", "out_c", "ch_lo") else v
            ops.append(op)
    return head, params, state, ops


def init_param(name, shape, gen):
    if name.endswith(".gamma"):
        return 1 + 0.2 * torch.randn(shape, generator=gen, dtype=torch.float64)
    if name.endswith(".beta") or name.endswith(".bias"):
        return 0.2 * torch.randn(shape, generator=gen, dtype=torch.float64)
    fan_in = 1
    for s in shape[:-1]:
        fan_in *= s
    return torch.randn(shape, generator=gen, dtype=torch.float64) * (2.0 / fan_in) ** 0.5


def to_torch_weight(w):
    """rnc layouts -> PyTorch's: conv [K][K][IC][OC] -> [OC][IC][K][K]; fc [IN][OUT] -> [OUT][IN]."""
    if w.dim() == 4:
        return w.permute(3, 2, 0, 1)
    if w.dim() == 2:
        return w.t()
    return w


def forward(ops, P, S, images, labels, head, training, weight=to_torch_weight):
    """Runs the dumped graph on NHWC images.  weight(w) gives a parameter in
    PyTorch's layout (the golden files keep rnc's; bench/ stores PyTorch's).
    Returns (logits, loss), or (logits, None) when labels is None."""
    t = {"images": images.permute(0, 3, 1, 2)}
    for op in ops:
        x = t[op["x"]]
        k = op["kind"]
        if k == "conv":
            y = F.conv2d(x, weight(P[op["w"]]), stride=op["stride"], padding=op["pad"])
        elif k == "batchnorm":
            y = F.batch_norm(x, S[op["rmean"]], S[op["rvar"]], P[op["w"]], P[op["b"]], training=training,
                             momentum=head["momentum"], eps=head["eps"])
        elif k == "relu":
            y = F.relu(x)
        elif k == "add":
            y = x + t[op["x2"]]
        elif k == "shortcut-A":
            s, lo = op["stride"], op["ch_lo"]
            sub = x[:, :, ::s, ::s]
            y = F.pad(sub, (0, 0, 0, 0, lo, op["out_c"] - sub.shape[1] - lo))
        elif k == "maxpool":
            y = F.max_pool2d(x, op["k"], op["stride"], op["pad"])
        elif k == "avgpool":
            y = x.mean(dim=(2, 3))
        elif k == "fc":
            y = F.linear(x, weight(P[op["w"]]), P[op["b"]])
        elif k == "softmax-xent":
            if labels is None:
                return x, None
            return x, F.cross_entropy(x, labels)
        else:
            raise SystemExit(f"unknown op {k}")
        t[op["y"]] = y
    raise SystemExit("the graph has no softmax-xent op")


MASK = (1 << 64) - 1
PROJECTIONS, SAMPLES = 16, 64


def mix(x):
    """SplitMix64's finalizer: a well-spread 64-bit hash of x (tests/golden.c: golden_mix)."""
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def f32(v):
    return struct.unpack("f", struct.pack("f", v))[0]


def golden_param(name, shape, offset, seed):
    """The compact format's parameters: uniform, from the seed and the element's
    offset in rnc's parameter buffer, rounded to float (as rnc stores them)."""
    count = 1
    for d in shape:
        count *= d
    fan_in = 1
    for d in shape[:-1]:
        fan_in *= d
    out = []
    for i in range(count):
        u = (mix((seed << 40) ^ (offset + i)) >> 11) * 2.0 ** -53 - 0.5
        if name.endswith(".gamma"):
            v = 1 + 0.4 * u
        elif name.endswith(".beta") or name.endswith(".bias"):
            v = 0.4 * u
        else:
            v = 2 * u * math.sqrt(6.0 / fan_in)
        out.append(f32(v))
    return torch.tensor(out, dtype=torch.float64).reshape(shape)


def probe_sign(seed, tensor, k, i):
    return 1.0 if mix((((seed << 16) ^ (tensor * PROJECTIONS + k + 1)) << 32) ^ i) >> 63 else -1.0


def probe_index(seed, tensor, j, count):
    return mix(((seed << 20) ^ (tensor + 1)) << 24 ^ (j + 0x5A5A)) % count


def write_probes(f, grads, seed):
    """Per gradient tensor: PROJECTIONS projections, then SAMPLES entries."""
    f.write(f"grad_probes {len(grads)} {PROJECTIONS} {SAMPLES}\n")
    for t, g in enumerate(grads):
        flat = g.flatten().tolist()
        proj = [sum(probe_sign(seed, t, k, i) * v for i, v in enumerate(flat)) for k in range(PROJECTIONS)]
        samples = [flat[probe_index(seed, t, j, len(flat))] for j in range(SAMPLES)]
        f.write(" ".join(f"{v:.10g}" for v in proj) + "\n")
        f.write(" ".join(f"{v:.10g}" for v in samples) + "\n")


def write(f, key, values):
    values = [float(v) for v in values]
    f.write(f"{key} {len(values)}\n")
    for i in range(0, len(values), 8):
        f.write(" ".join(f"{v:.10g}" for v in values[i:i + 8]) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rnc", required=True)
    ap.add_argument("--spec", required=True)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--compact", action="store_true", help="format 2: generated parameters, gradient probes")
    ap.add_argument("--fp32-error", action="store_true",
                    help="also run the step in float32 and print how far its results are from float64's "
                         "(what a float32 implementation can be held to)")
    a = ap.parse_args()
    dump = subprocess.run([a.rnc, "--dump-graph", a.spec, "-b", str(a.batch)], check=True,
                          capture_output=True, text=True).stdout
    head, params, state, ops = parse_dump(dump)
    gen = torch.Generator().manual_seed(a.seed)
    if a.compact:
        # offsets in rnc's parameter buffer: the tensors packed in order (the
        # dump's offset column is 0, it is printed before the memory plan)
        P, off = {}, 0
        for n, _, shape in params:
            P[n] = golden_param(n, shape, off, a.seed).requires_grad_()
            off += P[n].numel()
    else:
        P = {n: init_param(n, shape, gen).requires_grad_() for n, _, shape in params}
    S = {n: (torch.ones(shape, dtype=torch.float64) if n.endswith("running_var")
             else torch.zeros(shape, dtype=torch.float64)) for n, _, shape in state}
    B = head["batch"]
    images = torch.randn(B, head["h"], head["w"], head["c"], generator=gen, dtype=torch.float64)
    labels = torch.randint(0, head["classes"], (B,), generator=gen)
    S0 = {n: v.clone() for n, v in S.items()}
    logits, loss = forward(ops, P, S, images, labels, head, training=True)
    loss.backward()
    with torch.no_grad():
        eval_logits, _ = forward(ops, P, S, images, labels, head, training=False)
    if a.fp32_error:
        P32 = {n: v.detach().float().requires_grad_() for n, v in P.items()}
        S32 = {n: v.float() for n, v in S0.items()}
        logits32, loss32 = forward(ops, P32, S32, images.float(), labels, head, training=True)
        loss32.backward()
        worst = max((((P32[n].grad.double() - P[n].grad).norm() / P[n].grad.norm().clamp(min=1e-6)).item(), n)
                    for n in P)
        print(f"float32 vs float64: loss {abs(loss32.item() - loss.item()) / abs(loss.item()):.2e}, "
              f"logits {((logits32.double() - logits).norm() / logits.norm()).item():.2e}, "
              f"largest gradient error {worst[0]:.2e} ({worst[1]})")
    with open(a.out, "w") as f:
        if a.compact:
            f.write(f"rnc-golden 2 {head['name']} batch {B} seed {a.seed}\n")
        else:
            f.write(f"rnc-golden 1 {head['name']} batch {B}\n")
            write(f, "params", torch.cat([P[n].detach().flatten() for n, _, _ in params]))
        write(f, "state", torch.cat([S0[n].flatten() for n, _, _ in state]))
        write(f, "images", images.flatten())
        write(f, "labels", labels)
        write(f, "loss", [loss.item()])
        write(f, "logits", logits.detach().flatten())
        if a.compact:
            write_probes(f, [P[n].grad for n, _, _ in params], a.seed)
        else:
            write(f, "grads", torch.cat([P[n].grad.flatten() for n, _, _ in params]))
        write(f, "state_after", torch.cat([S[n].flatten() for n, _, _ in state]))
        write(f, "eval_logits", eval_logits.flatten())


if __name__ == "__main__":
    main()
