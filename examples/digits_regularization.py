"""Regularisation on the digits: the same 64-256-10 tanh classifier trained on a small
training set (so it can overfit) without regularisation, with dropout on the hidden
layer, with an L2 penalty on the weights, and with both; prints each one's train and
test accuracy. Dropout is drawn in the graph at every step and is the identity when the
model is evaluated; the L2 penalty is a term of the loss, so it shows in the gradients.

    python examples/digits_regularization.py [--train 300] [--epochs 100] [--p 0.5] [--l2 1e-2]
"""
from __future__ import annotations

import argparse

import numpy as np

import graphc as gc
from graphc.losses import l2_penalty

if __package__:
    from .digits_mlp import load_data
else:   # run as a file: its folder is first on sys.path
    from digits_mlp import load_data


def build(p: float, l2: float, hidden: int, seed: int):
    """x -> tanh(linear hidden) -> [dropout p] -> linear 10; cross-entropy [+ L2 on W's]."""
    g = gc.Graph("digits_regularised", seed=seed)
    n = gc.sym("N")
    x, y = g.input("x", (n, 64)), g.input("y", (n,), dtype="int64")
    h = gc.tanh(gc.linear(x, hidden, name="l1"), name="h")
    if p:
        h = gc.dropout(h, p, name="h_dropped")
    logits = gc.linear(h, 10, name="l2")
    loss = gc.softmax_cross_entropy(logits, y, name="cross_entropy")
    if l2:
        loss = loss + l2_penalty([g["l1_W"], g["l2_W"]], l2, name="l2_penalty")
    return g, logits, loss


def accuracy(predict, x, y) -> float:
    return float(np.mean(predict(x=x)[0].argmax(axis=1) == y))


def run(p: float, l2: float, data, args) -> dict:
    x_train, y_train, x_test, y_test = data
    g, logits, loss = build(p, l2, args.hidden, args.seed)
    step = gc.compile(g, loss, optimizer=gc.SGD(lr=args.lr, momentum=0.9), backend="numpy")
    gc.Trainer(step).fit({"x": x_train, "y": y_train}, epochs=args.epochs, batch_size=32,
                         seed=args.seed, progress=not args.no_progress)
    predict = step.function([logits])      # evaluation: dropout is the identity here
    weights = float(np.sqrt(sum(np.sum(step[w] ** 2) for w in ("l1_W", "l2_W"))))
    return {"train": accuracy(predict, x_train, y_train),
            "test": accuracy(predict, x_test, y_test), "weight_norm": weights}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=300, help="training images used")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--p", type=float, default=0.5, help="dropout probability")
    ap.add_argument("--l2", type=float, default=1e-2, help="L2 penalty weight")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    x_train, x_test, y_train, y_test = load_data(args.seed)
    data = (x_train[:args.train], y_train[:args.train], x_test, y_test)
    print(f"digits: {args.train} training images, {len(x_test)} test; 64 -> {args.hidden} "
          f"tanh -> 10, {args.epochs} epochs of SGD (momentum 0.9, lr {args.lr})")
    configs = {"none": (0.0, 0.0), f"dropout p={args.p}": (args.p, 0.0),
               f"L2 {args.l2:g}": (0.0, args.l2), "dropout + L2": (args.p, args.l2)}
    results = {}
    print(f"{'regularisation':<16} {'train acc':>9} {'test acc':>9} {'|W|':>7}")
    for label, (p, l2) in configs.items():
        r = results[label] = run(p, l2, data, args)
        print(f"{label:<16} {r['train']:>9.4f} {r['test']:>9.4f} {r['weight_norm']:>7.2f}")
    return results


if __name__ == "__main__":
    main()
