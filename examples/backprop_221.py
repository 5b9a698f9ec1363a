"""The course's backpropagation example: a 2-2-1 sigmoid network, no biases, one input.
W1 = [[0.1, 0.8], [0.4, 0.6]] with net_i = sum_j W1[i, j] x_j, W2 = [0.3, 0.9],
x = [0.35, 0.9], target t = 0.5, loss L = 1/2 (t - y)^2. Prints the forward values, the
deltas, the six weight gradients and the weights after one SGD step (lr = 1) next to the
slide's figures, and the backward equations graphc derived.

    python examples/backprop_221.py
"""
from __future__ import annotations

import numpy as np

import graphc as gc

W1_INIT = np.array([[0.1, 0.8], [0.4, 0.6]])
W2_INIT = np.array([[0.3, 0.9]])
X_IN = np.array([[0.35], [0.9]])             # a column: net = W1 @ x
T = np.array([[0.5]])

# the slide's figures, rounded as printed there
SLIDE = {"h": [0.68, 0.6637], "y": 0.69, "delta2": -0.0406, "delta1": [-0.0027, -0.0082],
         "dW1": [[0.000945, 0.00243], [0.00287, 0.00738]], "dW2": [0.0276, 0.0269],
         "W1_new": [[0.0991, 0.7976], [0.3971, 0.5926]], "W2_new": [0.2724, 0.8731]}


def build(row_convention: bool = True):
    """The graph; row_convention: net_i = sum_j W1[i, j] x_j (W1 @ x), else x^T W1."""
    g = gc.Graph("backprop_221", dtype="float64")
    x = g.input("x", (2, 1))
    t = g.input("t", (1, 1))
    W1 = g.param("W1", (2, 2), init=W1_INIT)
    W2 = g.param("W2", (1, 2), init=W2_INIT)
    net1 = gc.matmul(W1 if row_convention else gc.transpose(W1), x, name="net1")
    h = gc.sigmoid(net1, name="h")                               # x^1 on the slide
    net2 = gc.matmul(W2, h, name="net2")
    y = gc.sigmoid(net2, name="y")                               # x^2 = y
    loss = gc.mse(y, t, half=True, reduction="sum", name="L")    # 1/2 (t - y)^2
    return g, {"W1": W1, "W2": W2, "net1": net1, "net2": net2, "h": h, "y": y, "L": loss}


def conventions() -> dict:
    """Which reading of W1's indices gives the slide's x_1^1 = 0.68."""
    out = {}
    for row in (True, False):
        g, n = build(row)
        out["W1 @ x" if row else "W1^T @ x"] = gc.function(g, [n["h"]])(x=X_IN)[0].ravel()
    print("which index convention reproduces the slide's hidden values (0.68, 0.6637)?")
    for k, v in out.items():
        print(f"  net = {k:<9} -> x^1 = ({v[0]:.4f}, {v[1]:.4f})")
    return out


def gradients(g, n) -> dict:
    """Forward values, deltas (= -dL/dnet) and weight gradients, from one generated call."""
    dnet1, dnet2, dW1, dW2 = gc.grad(n["L"], [n["net1"], n["net2"], n["W1"], n["W2"]])
    f = gc.function(g, [n["h"], n["y"], n["L"], dnet1, dnet2, dW1, dW2])
    h, y, L, dn1, dn2, gW1, gW2 = f(x=X_IN, t=T)
    return {"h": h.ravel(), "y": y.item(), "L": L.item(), "delta1": -dn1.ravel(),
            "delta2": -dn2.item(), "dW1": gW1, "dW2": gW2.ravel()}


def slide_arithmetic(v: dict) -> dict:
    """The slide's own arithmetic: gradients from the deltas rounded to 3 significant
    figures (0.0027, 0.0082, 0.0406), which is why its figures differ from exact ones."""
    d1, d2 = np.array(SLIDE["delta1"]), SLIDE["delta2"]
    x = X_IN.ravel()
    return {"dW1": -np.outer(d1, x), "dW2": -d2 * np.array(SLIDE["h"])}


def print_tables(v: dict, approx: dict) -> None:
    print("\nforward (graphc, float64)            slide")
    print(f"  x^1_1 = sigmoid(net1_1) = {v['h'][0]:.6f}   {SLIDE['h'][0]}")
    print(f"  x^1_2 = sigmoid(net1_2) = {v['h'][1]:.6f}   {SLIDE['h'][1]}")
    print(f"  y     = sigmoid(net2)   = {v['y']:.6f}   {SLIDE['y']}")
    print(f"  L     = 1/2 (t - y)^2   = {v['L']:.6f}")
    print("deltas, delta = -dL/dnet")
    print(f"  delta^2_1 = {v['delta2']:+.6f}   {SLIDE['delta2']}")
    for i in range(2):
        print(f"  delta^1_{i + 1} = {v['delta1'][i]:+.6f}   {SLIDE['delta1'][i]}")
    print("\nweight     dL/dW (graphc)   slide      slide's arithmetic (rounded deltas)")
    for name, i, j in [("W1", 0, 0), ("W1", 0, 1), ("W1", 1, 0), ("W1", 1, 1),
                       ("W2", 0, 0), ("W2", 0, 1)]:
        ours = v["dW1"][i, j] if name == "W1" else v["dW2"][j]
        slide = SLIDE["dW1"][i][j] if name == "W1" else SLIDE["dW2"][j]
        theirs = approx["dW1"][i, j] if name == "W1" else approx["dW2"][j]
        label = f"{name[1]}_{i + 1}{j + 1}" if name == "W1" else f"2_1{j + 1}"
        print(f"  W^{label:<6} {ours:.6f}         {slide:<10} {theirs:.6f}")


def one_update(lr: float = 1.0) -> dict:
    """A compiled training step with SGD(lr): the weights after one update."""
    g, n = build()
    step = gc.compile(g, n["L"], optimizer=gc.SGD(lr=lr))
    loss = step(x=X_IN, t=T)
    new = {"W1": step["W1"].copy(), "W2": step["W2"].ravel().copy(), "L": loss}
    print(f"\nafter one SGD step, lr = {lr} (W <- W - lr dL/dW)    slide")
    for (i, j), w in np.ndenumerate(new["W1"]):
        print(f"  W^1_{i + 1}{j + 1} = {w:.6f}                      {SLIDE['W1_new'][i][j]}")
    for j, w in enumerate(new["W2"]):
        print(f"  W^2_1{j + 1} = {w:.6f}                      {SLIDE['W2_new'][j]}")
    return new


def main() -> dict:
    """Everything above; returns the numbers (forward, deltas, gradients, update)."""
    conv = conventions()
    g, n = build()
    print("\nthe backward equations graphc derives (gc.show_grad):")
    print(gc.show_grad(g, n["L"]))
    values = gradients(g, n)
    approx = slide_arithmetic(values)
    print_tables(values, approx)
    values["updated"] = one_update()
    values["slide_arithmetic"], values["conventions"] = approx, conv
    return values


if __name__ == "__main__":
    main()
