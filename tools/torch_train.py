#!/usr/bin/python3
"""PyTorch reference trainer: the network rnc compiles, trained by PyTorch on the same data.

    tools/torch_train.py --spec specs/resnet20.spec --data ../shared/data/cifar10 \\
        --epochs 30 --lr-steps 15,22 --log run.csv --checkpoint run.pt [--resume run.pt]

It takes a network binary's `train` flags and writes the same CSV (epoch,step,
lr,train_loss,train_err,val_loss,val_err,seconds,images_per_s, one row per
epoch), so a run of it and an rnc run compare column for column, and
`rnc plot` draws both.  What is the same as rnc's `train`:

* the graph: built op for op from `rnc --dump-graph SPEC` (tools/torch_golden.py's
  parse_dump and forward), float32, NCHW tensors in channels_last memory;
* the data: CIFAR-10 binary files; a directory's data_batch_1..5.bin or one .bin
  file, the last --val images (default 5,000) held out, the rest trained on in a
  new random order every epoch, the last partial batch dropped;
* the augmentation: 4 pixels of zero padding of the raw pixels, a random 32x32
  crop, a horizontal flip with probability 1/2, then per-channel normalization
  with runtime/cifar.c's rnc_cifar_mean/rnc_cifar_std; held-out images plain;
* the initialization (runtime/net.c): convolutions He-normal with fan_out
  (std sqrt(2 / (k*k*out_channels))), fully connected weight and bias uniform
  in +-1/sqrt(in_features), BN gamma 1, beta 0, running mean 0, variance 1;
* SGD as runtime/sgd.c: g = grad + weight_decay * p, v = momentum * v + g,
  p -= lr * v, with weight decay on every parameter (BN gamma and beta and the
  fc bias too), v starting at 0 (torch.optim.SGD's update, written out);
* the schedule (runtime/schedule.c): lr times lr-decay (0.1) at each --lr-steps
  boundary (epochs with --epochs, iterations with --steps), --warmup N
  iterations at the warm-up lr first; the spec's recipe as the defaults;
* the log's numbers: train_loss and train_err from the training batches of the
  epoch as they are trained (BN in training mode), val_loss and val_err on the
  held-out images with BN's running statistics, seconds the epoch including
  its evaluation, images_per_s its training images per second.

What differs: the random numbers (PyTorch's generator, not rnc's), so the two
runs start from different weights and see the images in a different order.

Checkpoints (torch.save; not rnc's format) hold the parameters, BN running
statistics, momentum, the step and the partly trained epoch's sums.  They are
written at every epoch's end, at the end of the run and, on SIGINT or SIGTERM,
after the step under way (then the trainer exits with status 130 or 143).
--resume FILE continues the run: the order and the augmentation of every
batch are functions of (seed, epoch, batch), so a resumed run trains on what
the uninterrupted one would have.  The log's rows after the checkpoint's step
(written after it was saved) are dropped when the run resumes.

Needs python3-torch (Debian).  experiments/run runs it for a runs.txt line
whose spec is written torch:SPEC (experiments/README.md).
"""
import argparse
import math
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import torch
    import torch.nn.functional as F
    from torch_golden import forward, parse_dump
except ImportError as e:
    sys.exit(f"torch_train: error: {e} (needs PyTorch: apt-get install python3-torch, and run /usr/bin/python3)")

HEADER = "epoch,step,lr,train_loss,train_err,val_loss,val_err,seconds,images_per_s"
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)   # runtime/cifar.c: rnc_cifar_mean
CIFAR_STD = (0.2470, 0.2435, 0.2616)    # runtime/cifar.c: rnc_cifar_std
RECORD = 3073                           # a label byte, then 32x32 red, green, blue planes
PAD = 4
CKPT_FORMAT = "rnc-torch-train 1"


def fail(msg):
    print(f"torch_train: error: {msg}", file=sys.stderr)
    sys.exit(1)


# ---- the spec's recipe ------------------------------------------------------

def read_recipe(path):
    """The training statements of a spec (docs/spec.md), with rnc's defaults."""
    r = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "lr_steps": [], "lr_steps_in_iterations": False,
         "lr_decay": 0.1, "warmup": 0, "warmup_lr": 0.0, "iterations": 0, "epochs": 0}
    with open(path) as f:
        for line in f:
            w = line.split("#", 1)[0].split()
            if not w:
                continue
            k, v = w[0], w[1:]
            if k == "lr":
                r["lr"] = float(v[0])
            elif k == "momentum":
                r["momentum"] = float(v[0])
            elif k == "weight-decay":
                r["weight_decay"] = float(v[0])
            elif k == "lr-decay":
                r["lr_decay"] = float(v[0])
            elif k == "iterations":
                r["iterations"] = int(v[0])
            elif k == "epochs":
                r["epochs"] = int(v[0])
            elif k == "lr-steps":
                unit = v[-1] if v[-1] in ("epochs", "iterations") else "epochs"
                r["lr_steps"] = [int(x) for x in v if x not in ("epochs", "iterations")]
                r["lr_steps_in_iterations"] = unit == "iterations"
            elif k == "warmup":          # warmup N lr X
                r["warmup"], r["warmup_lr"] = int(v[0]), float(v[2])
    return r


def lr_at(r, it, ipe):
    """runtime/schedule.c: rnc_lr_at."""
    if it < r["warmup"]:
        return r["warmup_lr"]
    now = it if r["lr_steps_in_iterations"] else it // ipe
    lr = r["lr"]
    for s in r["lr_steps"]:
        if now >= s:
            lr *= r["lr_decay"]
    return lr


def describe(r):
    s = f"lr {r['lr']:g}"
    if r["lr_steps"]:
        unit = "iterations" if r["lr_steps_in_iterations"] else "epochs"
        s += f", x{r['lr_decay']:g} at {unit} " + ",".join(str(v) for v in r["lr_steps"])
    if r["warmup"]:
        s += f", warmup lr {r['warmup_lr']:g} for {r['warmup']} iterations"
    return s


# ---- data -------------------------------------------------------------------

def load_cifar(path):
    """(images uint8 [N,3,32,32], labels int64 [N]) from a CIFAR-10 directory or .bin file."""
    if os.path.isdir(path):
        files = [os.path.join(path, f"data_batch_{i}.bin") for i in range(1, 6)]
        for f in files:
            if not os.path.exists(f):
                fail(f"{f}: missing (a CIFAR-10 directory needs data_batch_1..5.bin)")
    else:
        files = [path]
    chunks = []
    for f in files:
        try:
            with open(f, "rb") as fh:
                data = fh.read()
        except OSError as e:
            fail(f"{f}: {e.strerror}")
        if not data or len(data) % RECORD:
            fail(f"{f}: size {len(data)} is not a multiple of {RECORD} bytes (not a CIFAR-10 binary file?)")
        chunks.append(torch.frombuffer(bytearray(data), dtype=torch.uint8).view(-1, RECORD))
    rec = torch.cat(chunks)
    labels = rec[:, 0].long()
    if int(labels.max()) > 9:
        fail(f"{path}: a record has label {int(labels.max())} (expected 0..9)")
    return rec[:, 1:].reshape(-1, 3, 32, 32).contiguous(), labels


MASK = (1 << 63) - 1


def stream(seed, kind, epoch, index=0):
    """A generator for one (seed, purpose, epoch, batch): resumable at any batch."""
    g = torch.Generator()
    g.manual_seed((((seed * 1000003 + kind) * 1000003 + epoch) * 1000003 + index) & MASK)
    return g


SHUFFLE, AUGMENT = 1, 2


def normalize_nhwc(x):
    """uint8 [B,3,H,W] -> float32 NHWC in memory, (x/255 - mean) / std (runtime/augment.c)."""
    mean = torch.tensor(CIFAR_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD, dtype=torch.float32).view(1, 3, 1, 1)
    y = (x.float() * (1.0 / 255.0) - mean) / std
    return y.permute(0, 2, 3, 1).contiguous()


def augment(x, gen):
    """RandomCrop(32, padding=4) with zero padding of the raw pixels, then a
    horizontal flip with probability 1/2, for each image of a uint8 batch."""
    B, C, H, W = x.shape
    padded = F.pad(x, (PAD, PAD, PAD, PAD))
    dy = torch.randint(0, 2 * PAD + 1, (B,), generator=gen)
    dx = torch.randint(0, 2 * PAD + 1, (B,), generator=gen)
    flip = torch.randint(0, 2, (B,), generator=gen).bool()
    rows = dy[:, None] + torch.arange(H)[None, :]
    cols = dx[:, None] + torch.arange(W)[None, :]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    b = torch.arange(B)[:, None, None, None]
    c = torch.arange(C)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]


# ---- the network ------------------------------------------------------------

def torch_shape(shape):
    """rnc's parameter shape -> PyTorch's: conv [K][K][IC][OC] -> OIHW; fc [IN][OUT] -> [OUT][IN]."""
    if len(shape) == 4:
        k1, k2, ic, oc = shape
        return [oc, ic, k1, k2]
    if len(shape) == 2:
        return [shape[1], shape[0]]
    return shape


def init_params(params, gen):
    """runtime/net.c's initialization (rnc_net_init), in PyTorch's layouts."""
    P = {}
    fc_fan_in = None
    for name, _, shape in params:
        s = torch_shape(shape)
        if name.endswith(".gamma"):
            t = torch.ones(s)
        elif name.endswith(".beta"):
            t = torch.zeros(s)
        elif len(shape) == 4:       # conv: He normal, fan_out = k * k * out channels
            fan_out = shape[0] * shape[1] * shape[3]
            t = torch.randn(s, generator=gen) * math.sqrt(2.0 / fan_out)
        elif len(shape) == 2:       # fc weight [IN][OUT]: uniform +-1/sqrt(IN)
            fc_fan_in = shape[0]
            t = (torch.rand(s, generator=gen) * 2 - 1) / math.sqrt(fc_fan_in)
        elif name.endswith(".bias"):  # fc bias: the same bound as its weight
            if fc_fan_in is None:
                fail(f"{name}: a bias before its fc weight in the dump")
            t = (torch.rand(s, generator=gen) * 2 - 1) / math.sqrt(fc_fan_in)
        else:
            fail(f"parameter {name} of shape {shape}: no initialization rule")
        if t.dim() == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        P[name] = t.requires_grad_()
    return P


def keep(w):
    """Parameters are created in PyTorch's own layout."""
    return w


# ---- checkpoints and the log ------------------------------------------------

def save_checkpoint(path, ck):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        torch.save(ck, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def open_log(path, resume_step):
    """The log, opened for appending; on a resumed run the rows after the
    checkpoint's step are dropped (they were written after it was saved)."""
    if resume_step is not None and os.path.exists(path):
        with open(path) as f:
            lines = f.read().splitlines()
        kept = [lines[0]] if lines else []
        for line in lines[1:]:
            fields = line.split(",")
            if line and fields[1].isdigit() and int(fields[1]) <= resume_step:
                kept.append(line)
        with open(path, "w") as f:
            f.write("".join(line + "\n" for line in kept))
    f = open(path, "a")
    if f.tell() == 0:
        f.write(HEADER + "\n")
        f.flush()
    return f


def csv_row(f, r):
    """runtime/log.c: rnc_csv_row."""
    val = f"{r['val_loss']:.9g},{r['val_err']:.9g}," if r["has_val"] else ",,"
    f.write(f"{r['epoch']},{r['step']},{r['lr']:.9g},{r['train_loss']:.9g},{r['train_err']:.9g},{val}"
            f"{r['seconds']:.3f},{r['images_per_s']:.1f}\n")
    f.flush()


def duration(s):
    t = int(s + 0.5)
    if t >= 3600:
        return f"{t // 3600}h{t // 60 % 60:02d}m"
    if t >= 60:
        return f"{t // 60}m{t % 60:02d}s"
    return f"{t}s"


# ---- training ---------------------------------------------------------------

def evaluate(ops, P, S, head, images, labels, batch=500):
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, images.shape[0], batch):
            x = normalize_nhwc(images[i:i + batch])
            y = labels[i:i + batch]
            logits, _ = forward(ops, P, S, x, None, head, training=False, weight=keep)
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum())
    n = images.shape[0]
    return loss / n, 1.0 - correct / n


stop_signal = None


def on_signal(signum, _frame):
    global stop_signal
    stop_signal = signum


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description="Train the network of an rnc spec with PyTorch, "
                                             "as a network binary's train command does.")
    ap.add_argument("--rnc", default=os.path.join(root, "build", "rnc"), help="the rnc compiler (default build/rnc)")
    ap.add_argument("--spec", required=True)
    ap.add_argument("-b", "--batch", type=int, help="batch size (default: the spec's)")
    ap.add_argument("--data", required=True, help="a CIFAR-10 directory (data_batch_1..5.bin) or .bin file")
    length = ap.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int)
    length.add_argument("--steps", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--momentum", type=float)
    ap.add_argument("--weight-decay", type=float)
    ap.add_argument("--lr-steps", help="a,b,...: epochs with --epochs, iterations with --steps")
    ap.add_argument("--warmup", type=int, help="iterations at the warm-up lr (the spec's, else lr/10)")
    ap.add_argument("--val", type=int, default=5000, help="hold out the last N images (default 5000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, help="PyTorch threads (default: PyTorch's, one per core)")
    ap.add_argument("--log", help="CSV log, one row per epoch")
    ap.add_argument("--checkpoint", help="checkpoint written every epoch (torch.save format)")
    ap.add_argument("--resume", help="continue from this checkpoint")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()

    if a.threads:
        torch.set_num_threads(a.threads)
    cmd = [a.rnc, "--dump-graph", a.spec] + (["-b", str(a.batch)] if a.batch else [])
    try:
        dump = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        fail(f"{a.rnc}: not found (build rnc first, or pass --rnc)")
    except subprocess.CalledProcessError as e:
        sys.stderr.write(e.stderr)
        fail(f"rnc --dump-graph {a.spec} failed")
    head, params, state, ops = parse_dump(dump)
    if (head["h"], head["w"], head["c"], head["classes"]) != (32, 32, 3, 10):
        fail(f"network {head['name']} is not a CIFAR-10 network (32x32x3 input, 10 classes)")
    B = head["batch"]

    r = read_recipe(a.spec)
    for k in ("lr", "momentum", "weight_decay"):
        if getattr(a, k) is not None:
            r[k] = getattr(a, k)
    if a.lr_steps is not None:
        r["lr_steps"] = [int(v) for v in a.lr_steps.split(",") if v] if a.lr_steps != "none" else []
        if a.epochs or a.steps:
            r["lr_steps_in_iterations"] = bool(a.steps)
    if a.warmup is not None:
        r["warmup"] = a.warmup
    if r["warmup"] and r["warmup_lr"] <= 0:
        r["warmup_lr"] = r["lr"] / 10

    images, labels = load_cifar(a.data)
    n = images.shape[0]
    if not 0 <= a.val < n:
        fail(f"validation split of {a.val} images leaves no training images (data has {n})")
    train_x, train_y = images[:n - a.val], labels[:n - a.val]
    val_x, val_y = images[n - a.val:], labels[n - a.val:]
    n_train = train_x.shape[0]
    if n_train < B:
        fail(f"{a.data}: {n_train} training images, fewer than one batch of {B}")
    ipe = n_train // B
    if a.steps:
        total = a.steps
    elif a.epochs:
        total = a.epochs * ipe
    elif r["iterations"]:
        total = r["iterations"]
    elif r["epochs"]:
        total = r["epochs"] * ipe
    else:
        total = ipe
    n_epochs = (total + ipe - 1) // ipe

    names = [name for name, _, _ in params]
    seed = a.seed
    P = init_params(params, torch.Generator().manual_seed(seed))
    S = {name: (torch.ones(shape) if name.endswith("running_var") else torch.zeros(shape))
         for name, _, shape in state}
    V = {name: torch.zeros_like(p) for name, p in P.items()}   # momentum, as rnc_sgd_init
    step, partial = 0, None
    if a.resume:
        try:
            ck = torch.load(a.resume)
        except Exception as e:   # OSError, or pickle's and torch's errors for a file of something else
            fail(f"{a.resume}: cannot read the checkpoint: {e}")
        if not isinstance(ck, dict) or ck.get("format") != CKPT_FORMAT:
            fail(f"{a.resume}: not a checkpoint of tools/torch_train.py")
        if ck["network"] != head["name"] or list(ck["params"]) != names:
            fail(f"{a.resume}: a checkpoint of {ck['network']}, not of {head['name']}")
        if ck["iters_per_epoch"] != ipe:
            print(f"torch_train: warning: checkpoint was saved with {ck['iters_per_epoch']} iterations per "
                  f"epoch, this run has {ipe} (different --data or --val?)", file=sys.stderr)
        with torch.no_grad():
            for name in names:
                P[name].copy_(ck["params"][name])
                V[name].copy_(ck["momentum"][name])
            for name in S:
                S[name].copy_(ck["state"][name])
        seed, step, partial = ck["seed"], ck["step"], ck.get("partial")
        if not a.quiet:
            print(f"resumed from {a.resume} at epoch {step // ipe}, step {step}", flush=True)

    try:
        log = open_log(a.log, step if a.resume else None) if a.log else None
    except OSError as e:
        fail(f"{a.log}: cannot open log: {e.strerror}")
    if not a.quiet:
        print(f"train {head['name']} with PyTorch {torch.__version__}: {n_train} training images, "
              f"{val_x.shape[0]} validation, batch {B}, {ipe} iterations/epoch")
        print(f"{total} iterations ({n_epochs} epochs), {describe(r)}, momentum {r['momentum']:g}, "
              f"weight decay {r['weight_decay']:g}, seed {seed}, {torch.get_num_threads()} threads", flush=True)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def checkpoint(sums):
        if a.checkpoint:
            save_checkpoint(a.checkpoint, {
                "format": CKPT_FORMAT, "network": head["name"], "spec": a.spec, "seed": seed, "step": step,
                "iters_per_epoch": ipe, "partial": sums,
                "params": {k: v.detach().clone() for k, v in P.items()},
                "momentum": V, "state": S})

    m, wd = r["momentum"], r["weight_decay"]
    run_start, run_first = time.perf_counter(), step
    last = None
    every, last_print = max(ipe // 10, 1), run_start
    while step < total:
        e, first = step // ipe, step % ipe
        end = min(ipe, first + (total - step))
        perm = torch.randperm(n_train, generator=stream(seed, SHUFFLE, e))
        # an epoch interrupted and resumed keeps its sums (and its time so far)
        loss_sum, correct, seen, spent = 0.0, 0, 0, 0.0
        if partial and partial["epoch"] == e and partial["first"] == first:
            loss_sum, correct, seen, spent = partial["loss_sum"], partial["correct"], partial["seen"], partial["seconds"]
        partial = None
        t0 = time.perf_counter() - spent
        lr = 0.0
        for i in range(first, end):
            lr = lr_at(r, step, ipe)
            idx = perm[i * B:(i + 1) * B]
            x = normalize_nhwc(augment(train_x[idx], stream(seed, AUGMENT, e, i)))
            y = train_y[idx]
            for p in P.values():
                p.grad = None
            logits, loss = forward(ops, P, S, x, y, head, training=True, weight=keep)
            loss.backward()
            with torch.no_grad():     # runtime/sgd.c: rnc_sgd_step, on every parameter
                for name, p in P.items():
                    g = p.grad.add(p, alpha=wd)
                    V[name].mul_(m).add_(g)
                    p.sub_(V[name], alpha=lr)
                batch_loss = loss.item()
                if not math.isfinite(batch_loss):
                    fail(f"loss is {batch_loss} at epoch {e + 1}, iteration {step + 1} (lr {lr:g}): training "
                         f"diverged; stopping without writing a checkpoint")
                loss_sum += batch_loss
                correct += int((logits.argmax(1) == y).sum())
            seen += B
            step += 1
            now = time.perf_counter()
            # as runtime/log.c: on the 10% marks, not more often than every 2 s
            if not a.quiet and (i + 1) % every == 0 and i + 1 != ipe and now - last_print >= 2:
                last_print = now
                eta = (total - step) * (now - run_start) / (step - run_first)
                print(f"epoch {e + 1}/{n_epochs}  step {i + 1}/{ipe}  loss {loss_sum / (seen // B):.4f}  "
                      f"train err {100 * (1 - correct / seen):.2f}%  {seen / (now - t0):.0f} img/s  lr {lr:g}  "
                      f"ETA {duration(eta)}", file=sys.stderr, flush=True)
            if stop_signal is not None and step < total and i + 1 < end:
                checkpoint({"epoch": e, "first": i + 1, "loss_sum": loss_sum, "correct": correct, "seen": seen,
                            "seconds": time.perf_counter() - t0})
                print(f"torch_train: stopped by signal {stop_signal} at step {step}"
                      f"{'; checkpoint ' + a.checkpoint if a.checkpoint else ' (no --checkpoint: nothing saved)'}",
                      file=sys.stderr, flush=True)
                sys.exit(128 + stop_signal)
        train_seconds = time.perf_counter() - t0
        row = {"epoch": e + 1, "step": step, "lr": lr, "train_loss": loss_sum / (seen // B),
               "train_err": 1 - correct / seen, "images_per_s": seen / max(train_seconds, 1e-9), "has_val": False}
        if val_x.shape[0]:
            row["val_loss"], row["val_err"] = evaluate(ops, P, S, head, val_x, val_y)
            row["has_val"] = True
        row["seconds"] = time.perf_counter() - t0
        last = row
        if not a.quiet:
            vs = f"  val err {100 * row['val_err']:.2f}%" if row["has_val"] else ""
            print(f"epoch {row['epoch']}/{n_epochs}  train loss {row['train_loss']:.4f}  "
                  f"train err {100 * row['train_err']:.2f}%{vs}  lr {lr:g}  time {row['seconds']:.1f}s", flush=True)
        if log:
            csv_row(log, row)
        if end == ipe or step == total:
            checkpoint(None)
        if stop_signal is not None and step < total:
            print(f"torch_train: stopped by signal {stop_signal} at step {step}", file=sys.stderr, flush=True)
            sys.exit(128 + stop_signal)

    took = duration(time.perf_counter() - run_start)
    if last:
        vs = f"  val err {100 * last['val_err']:.2f}%" if last["has_val"] else ""
        print(f"final: train loss {last['train_loss']:.4f}  train err {100 * last['train_err']:.2f}%{vs}  time {took}")
    else:
        print(f"final: nothing to train (already at iteration {step} of {total})  time {took}")


if __name__ == "__main__":
    main()
