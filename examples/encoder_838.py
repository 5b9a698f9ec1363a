"""The 8-3-8 encoder from the course: a sigmoid network learns the identity on the eight
one-hot patterns through three hidden units, so it has to invent a (nearly binary) code.
Squared error 1/2 sum (x - out)^2, full-batch SGD with momentum.

    python examples/encoder_838.py
"""
from __future__ import annotations

import numpy as np

import graphc as gc


def build_graph(seed: int):
    """x (8, 8) -> sigmoid(linear 3) = code -> sigmoid(linear 8) = out; half squared error."""
    g = gc.Graph("encoder_838", dtype="float32", seed=seed)
    x = g.input("x", (8, 8))
    code = gc.sigmoid(gc.linear(x, 3, name="enc"), name="code")
    out = gc.sigmoid(gc.linear(code, 8, name="dec"), name="out")
    loss = gc.mse(out, x, half=True, reduction="sum", name="loss")
    return g, code, out, loss


def build(seed: int = 1) -> dict:
    """The model file convention (graphc show / grad / code / train examples/encoder_838.py):
    the graph, its loss, the eight patterns to train on, and the optimizer."""
    g, code, out, loss = build_graph(seed)
    return {"graph": g, "loss": loss, "data": {"x": np.eye(8, dtype=np.float32)},
            "optimizer": gc.SGD(lr=1.0, momentum=0.5)}


def print_table(patterns, codes, outputs) -> None:
    """The slide's table: input -> hidden values -> output, plus the binarised code."""
    print("  input       hidden values        code   output")
    for p, c, o in zip(patterns, codes, outputs):
        bits = "".join(str(int(v)) for v in p)
        hidden = " ".join(f"{v:.2f}" for v in c)
        code = "".join(str(int(v > 0.5)) for v in c)
        out = "".join(str(int(v > 0.5)) for v in o)
        print(f"  {bits} -> {hidden}  ->  {code}   -> {out}")


def main(steps: int = 2500, lr: float = 1.0, momentum: float = 0.5, seed: int = 1) -> dict:
    """Train and print the hidden code of each pattern; returns codes and outputs."""
    g, code, out, loss = build_graph(seed)
    step = gc.compile(g, loss, optimizer=gc.SGD(lr=lr, momentum=momentum))
    patterns = np.eye(8, dtype=np.float32)
    losses = [step(x=patterns) for _ in range(steps)]
    codes, outputs = step.function([code, out])(x=patterns)
    binary = (codes > 0.5).astype(int)
    result = {"codes": codes, "binary": binary, "outputs": outputs, "losses": losses,
              "distinct_binary": len({tuple(r) for r in binary}),
              "distinct_rounded": len({tuple(r) for r in codes.round(1)}),
              "identity": bool(np.all(outputs.argmax(axis=1) == np.arange(8)))}
    print(f"8-3-8 sigmoid encoder, seed {seed}: {steps} full-batch steps, lr {lr}, momentum "
          f"{momentum}; loss {losses[0]:.3f} -> {losses[-1]:.4f}")
    print_table(patterns, codes, outputs)
    print(f"distinct binary codes: {result['distinct_binary']} of 8; distinct codes rounded "
          f"to 0.1: {result['distinct_rounded']} of 8; identity learned: {result['identity']}")
    return result


if __name__ == "__main__":
    main()
