"""XOR, the function no linear model represents: first the course's hand-set ReLU network
h = relu(x W + c), y = h w + b; then a small tanh/sigmoid network that learns it from
random weights with the squared loss J = 1/4 sum (f*(x) - f(x))^2.

    python examples/xor.py
"""
from __future__ import annotations

import numpy as np

import graphc as gc

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
TARGET = np.array([0, 1, 1, 0], dtype=np.float64)


def hand_set_network() -> dict:
    """Evaluate the course's solution: W=[[1,1],[1,1]], c=[0,-1], w=[1,-2], b=0."""
    g = gc.Graph("xor_hand_set", dtype="float64")
    x = g.input("x", (4, 2))
    W = g.param("W", (2, 2), init=np.array([[1.0, 1.0], [1.0, 1.0]]))
    c = g.param("c", (2,), init=np.array([0.0, -1.0]))
    w = g.param("w", (2, 1), init=np.array([[1.0], [-2.0]]))
    b = g.param("b", (), init=0.0)
    pre = x @ W + c
    h = gc.relu(pre, name="h")
    y = gc.reshape(h @ w + b, (4,), name="y")
    pre_v, h_v, y_v = gc.function(g, [pre, h, y])(x=X)
    print("hand-set ReLU network  h = relu(x W + c),  y = h w + b")
    print("  x1 x2 | x W + c    | h = relu   | y   target")
    for xi, pi, hi, yi, ti in zip(X, pre_v, h_v, y_v, TARGET):
        print(f"  {xi[0]:2.0f} {xi[1]:2.0f} | {pi[0]:4.0f} {pi[1]:4.0f}  | {hi[0]:4.0f} "
              f"{hi[1]:4.0f}  | {yi:3.0f} {ti:4.0f}")
    return {"h": h_v, "y": y_v}


FEEDS = {"x": X.astype(np.float32), "t": TARGET.astype(np.float32).reshape(4, 1)}


def learned_graph(hidden: int = 4, seed: int = 0) -> tuple:
    """(graph, loss J, output y) of the 2-`hidden`-1 network: tanh hidden, sigmoid out."""
    g = gc.Graph("xor_learned", dtype="float32", seed=seed)
    x = g.input("x", (4, 2))
    t = g.input("t", (4, 1))
    h = gc.tanh(gc.linear(x, hidden, name="hidden"), name="h")
    y = gc.sigmoid(gc.linear(h, 1, name="out"), name="y")
    loss = gc.mse(y, t, name="J")                           # 1/4 sum (t - y)^2
    return g, loss, y


def build() -> dict:
    """The learned network as a model file (`graphc show|code|train examples/xor.py`)."""
    g, loss, _ = learned_graph()
    return {"graph": g, "loss": loss, "data": FEEDS,
            "optimizer": gc.SGD(lr=1.0, momentum=0.9)}


def learned_network(hidden: int = 4, steps: int = 1000, lr: float = 1.0,
                    momentum: float = 0.9, seed: int = 0) -> dict:
    """Train 2-`hidden`-1 (tanh hidden units, sigmoid output) on the four points."""
    g, loss, y = learned_graph(hidden, seed)
    step = gc.compile(g, loss, optimizer=gc.SGD(lr=lr, momentum=momentum))
    feeds = FEEDS
    losses = [step(feeds) for _ in range(steps)]
    pred = step.function([y])(x=feeds["x"])[0].ravel()
    print(f"\nlearned 2-{hidden}-1 network (tanh, sigmoid output), random init seed {seed}, "
          f"{steps} full-batch SGD steps (lr {lr}, momentum {momentum})")
    print(f"  loss J: {losses[0]:.4f} at the start -> {losses[-1]:.6f}")
    print("  x1 x2 | y        rounded  target")
    for xi, p, ti in zip(X, pred, TARGET):
        print(f"  {xi[0]:2.0f} {xi[1]:2.0f} | {p:.4f}   {round(float(p)):d}        {ti:.0f}")
    return {"pred": pred, "rounded": np.rint(pred).astype(int), "losses": losses}


def main(steps: int = 1000, hidden: int = 4, seed: int = 0) -> dict:
    """Both networks; returns {'hand': {'h', 'y'}, 'learned': {'pred', 'rounded', ...}}."""
    return {"hand": hand_set_network(),
            "learned": learned_network(hidden=hidden, steps=steps, seed=seed)}


if __name__ == "__main__":
    main()
