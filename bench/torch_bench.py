#!/usr/bin/python3
"""PyTorch baseline for bench/run: the network rnc compiles, timed in PyTorch.

    bench/torch_bench.py --rnc build/rnc --spec specs/resnet20.spec --batch 128 \
        --mode train --steps 10 --threads 2

Builds the network from `rnc --dump-graph` (op for op the graph rnc compiles;
parse_dump comes from tools/torch_golden.py) with parameters stored in
PyTorch's own layouts (conv weights OIHW in channels_last memory format, fc
weight [OUT][IN]), float32, input in channels_last.  A training step is
zero_grad + forward + cross-entropy + backward + SGD step (momentum 0.9,
weight decay 1e-4, PyTorch's default SGD implementation).  Inference is the
forward pass to logits in eval mode (running BN statistics) under
torch.no_grad().  Synthetic data, fixed for the run; `--warmup` untimed steps
(default 3) then `--steps` timed ones.  Prints

    torch train images/s: X
    torch ms/step: Y
    torch peak rss MB: Z     (getrusage of this process)
"""
import argparse
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from torch_golden import forward, parse_dump  # noqa: E402

import torch  # noqa: E402


def torch_shape(shape):
    """rnc parameter shape -> PyTorch's: conv [K][K][IC][OC] -> [OC][IC][K][K]; fc [IN][OUT] -> [OUT][IN]."""
    if len(shape) == 4:
        k1, k2, ic, oc = shape
        return [oc, ic, k1, k2]
    if len(shape) == 2:
        return [shape[1], shape[0]]
    return shape


def make_params(params, gen):
    P = {}
    for name, _, shape in params:
        s = torch_shape(shape)
        if name.endswith(".gamma"):
            t = torch.ones(s)
        elif name.endswith(".beta") or name.endswith(".bias"):
            t = torch.zeros(s)
        else:
            fan_in = 1
            for v in shape[:-1]:
                fan_in *= v
            t = torch.randn(s, generator=gen) * (2.0 / fan_in) ** 0.5
        if t.dim() == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        P[name] = t.requires_grad_()
    return P


def keep(w):
    """Parameters are created in PyTorch's own layout here."""
    return w


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rnc", required=True, help="path to the rnc compiler")
    ap.add_argument("--spec", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--mode", choices=("train", "infer"), default="train")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--bf16", action="store_true",
                    help="PyTorch's own mixed precision: torch.autocast('cpu', dtype=torch.bfloat16)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    dump = subprocess.run([a.rnc, "--dump-graph", a.spec, "-b", str(a.batch)], check=True,
                          capture_output=True, text=True).stdout
    head, params, state, ops = parse_dump(dump)
    gen = torch.Generator().manual_seed(1)
    P = make_params(params, gen)
    S = {n: (torch.ones(shape) if n.endswith("running_var") else torch.zeros(shape)) for n, _, shape in state}
    B = head["batch"]
    # NHWC in memory: the forward's NCHW view of it is channels_last
    images = torch.randn(B, head["h"], head["w"], head["c"], generator=gen)
    labels = torch.randint(0, head["classes"], (B,), generator=gen)

    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16)
    if a.mode == "train":
        opt = torch.optim.SGD(list(P.values()), lr=1e-4, momentum=0.9, weight_decay=1e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast:
                _, loss = forward(ops, P, S, images, labels, head, training=True, weight=keep)
            loss.backward()
            opt.step()
    else:
        def step():
            with torch.no_grad(), autocast:
                forward(ops, P, S, images, None, head, training=False, weight=keep)

    print(f"torch bench {head['name']}: {a.mode}, batch {B}, {a.steps} steps, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}{', bf16 autocast' if a.bf16 else ''}", flush=True)
    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = time.perf_counter() - t0
    print(f"torch {a.mode} images/s: {a.steps * B / dt:.1f}")
    print(f"torch ms/step: {1e3 * dt / a.steps:.2f}")
    print(f"torch peak rss MB: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}")


if __name__ == "__main__":
    main()
