"""Handwritten digits (scikit-learn's bundled 8x8 images) with a 64-128-10 tanh MLP:
graphc compiles the training step for the best backend here (C kernels on a CPU with a C
compiler, Triton on a GPU, else NumPy), trains it in minibatches, shows where the generated
code lives, and times one step of the C and the NumPy backends beside hand-written NumPy
and PyTorch eager (graphc bench's digits step, `graphc.bench`'s mlp_small workload).

    python examples/digits_mlp.py [--epochs 20] [--batch-size 64] [--lr 0.1] [--no-bench]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import graphc as gc
from graphc import bench


def load_data(seed: int = 0, test_size: float = 0.25):
    """Digits scaled to [0, 1] as float32, labels int64, stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=test_size, stratify=y, random_state=seed)


def build_model(hidden: int = 128, classes: int = 10, seed: int = 0):
    """The graph: x (N, 64) -> linear -> tanh -> linear -> softmax cross-entropy."""
    g = gc.Graph("digits_mlp", dtype="float32", seed=seed)
    n = gc.sym("N")                                      # batch size, bound at run time
    x = g.input("x", (n, 64))
    y = g.input("y", (n,), dtype="int64")
    h = gc.tanh(gc.linear(x, hidden, name="l1"))         # params l1_W (64, hidden), l1_b
    logits = gc.linear(h, classes, name="l2")
    loss = gc.softmax_cross_entropy(logits, y, name="loss")
    return g, logits, loss


def build(seed: int = 0) -> dict:
    """The model file convention (`graphc train examples/digits_mlp.py`): the graph, its
    loss, the training split and the optimizer."""
    x_train, _, y_train, _ = load_data(seed)
    graph, _, loss = build_model(seed=seed)
    return {"graph": graph, "loss": loss, "data": {"x": x_train, "y": y_train},
            "optimizer": gc.SGD(lr=0.1, momentum=0.9)}


def accuracy_metric(step, logits):
    """metric(step, data) for the Trainer: the fraction of argmax(logits) equal to y."""
    predict = step.function([logits])                    # reads the step's live params

    def accuracy(_step, data) -> float:
        return float(np.mean(predict(x=data["x"])[0].argmax(axis=1) == data["y"]))
    return accuracy


def show_code(step, lines: int = 8) -> None:
    """Where the generated training step is, its size, its first lines (for the C backend,
    of its first C kernel), compile times."""
    source = step.source
    print(f"generated training step ({step.backend} backend): {step.path}")
    print(f"  {len(source.splitlines())} lines, {len(source)} bytes")
    if step.c_path is not None:
        kernel = next(k for k in step.kernels if k.source)
        print(f"its C kernels: {step.c_path} ({len(step.c_source.splitlines())} lines); "
              f"the first, {kernel.name}:")
        source = kernel.source
    for line in source.splitlines()[:lines]:
        print(f"  | {line}")
    total = sum(step.timings.values())
    parts = ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in step.timings.items())
    print(f"compile time {total * 1e3:.0f} ms ({parts})")


def bench_step(args) -> dict:
    """One training step at the digits sizes (64-128-10, batch 64, SGD lr 0.1, momentum
    0.9), graphc (C and NumPy) vs NumPy by hand vs PyTorch eager from the same initial
    parameters, losses checked before timing: `graphc bench mlp_small` at this script's
    rounds and calls. Returns the workload's record (rows: median, IQR, ratio)."""
    backends = ("numpy",) if args.backend == "numpy" else ("c", "numpy")
    record = bench.run(bench.BenchConfig(["mlp_small"], device=bench.Device(backends),
                                         timing=(args.rounds, args.reps, 20)))
    print(bench.report(record))
    return record["workloads"]["mlp_small"]


def train(args) -> dict:
    """Build, compile and train; returns the step, its history and the test accuracy."""
    x_train, x_test, y_train, y_test = load_data(args.seed)
    t0 = time.perf_counter()
    graph, logits, loss = build_model(seed=args.seed)
    step = gc.compile(graph, loss, optimizer=gc.SGD(lr=args.lr, momentum=args.momentum),
                      backend=args.backend)
    build_s = time.perf_counter() - t0
    print(f"digits: {len(x_train)} train / {len(x_test)} test images, 64 -> 128 tanh -> 10")
    accuracy = accuracy_metric(step, logits)
    t0 = time.perf_counter()
    history = gc.Trainer(step).fit({"x": x_train, "y": y_train}, epochs=args.epochs,
                                   batch_size=args.batch_size, shuffle=True, seed=args.seed,
                                   validation={"x": x_test, "y": y_test}, metric=accuracy,
                                   progress=not args.no_progress)
    train_s = time.perf_counter() - t0
    acc = history.metric[-1]
    print(f"test accuracy {acc:.4f} after {args.epochs} epochs ({train_s:.2f} s training, "
          f"final train loss {history.loss[-1]:.4f})")
    show_code(step)
    print(f"graph to callable step: {build_s * 1e3:.0f} ms")
    return {"step": step, "graph": graph, "loss": loss, "history": history, "accuracy": acc,
            "train_seconds": train_s, "data": (x_train, y_train)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--backend", choices=("auto", "c", "numpy"), default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-bench", action="store_true", help="skip the step timing")
    p.add_argument("--rounds", type=int, default=30, help="timing rounds (interleaved)")
    p.add_argument("--reps", type=int, default=30, help="calls per function per round")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    """Train, report, and (unless --no-bench) time one step against the references."""
    args = parse_args(argv)
    result = train(args)
    if not args.no_bench:
        print()
        result["bench"] = bench_step(args)
    return result


if __name__ == "__main__":
    main()
