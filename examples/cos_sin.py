"""The course's automatic-differentiation example J = cos(sin(x^2) + 3x^2), split as on the
slide into t = x^2, u1 = sin(t), u2 = 3t, u = u1 + u2, J = cos(u): the forward/backward
table at one x, the generated code for (J, dJ/dx), and dJ/dx against the closed form.

    python examples/cos_sin.py [x]
"""
from __future__ import annotations

import sys

import numpy as np
import sympy

import graphc as gc

# the slide's table: each node's forward line and how its adjoint dJ/d(node) is computed
# (the backward pass runs these bottom-up, from dJ/dJ = 1)
ROWS = [("x", "input", "dJ/dx  = dJ/dt * 2x"),
        ("t", "t = x^2", "dJ/dt  = dJ/du1 * cos(t) + dJ/du2 * 3"),
        ("u1", "u1 = sin(t)", "dJ/du1 = dJ/du * 1"),
        ("u2", "u2 = 3t", "dJ/du2 = dJ/du * 1"),
        ("u", "u = u1 + u2", "dJ/du  = dJ/dJ * -sin(u)"),
        ("J", "J = cos(u)", "dJ/dJ  = 1")]
NAMES = ["x", "t", "u1", "u2", "u"]


def build():
    """The graph, node by node as on the slide; returns it and the named handles."""
    g = gc.Graph("cos_sin", dtype="float64")
    x = g.input("x", ())
    t = gc.square(x, name="t")
    u1 = gc.sin(t, name="u1")
    u2 = g.apply(lambda a: 3 * a, [t], name="u2", hint="mul")
    u = g.apply(lambda a, b: a + b, [u1, u2], name="u", hint="add")
    J = gc.cos(u, name="J")
    return g, {"x": x, "t": t, "u1": u1, "u2": u2, "u": u, "J": J}


def closed_form():
    """dJ/dx by SymPy on the whole formula, as an expression and a NumPy function."""
    xs = sympy.Symbol("x")
    d = sympy.diff(sympy.cos(sympy.sin(xs ** 2) + 3 * xs ** 2), xs)
    return d, sympy.lambdify(xs, d, "numpy")


def table(g, n, adjoints: list, x: float) -> dict:
    """Every intermediate value and its adjoint dJ/d(node) at x, from one generated call."""
    f = gc.function(g, [n[k] for k in NAMES + ["J"]] + adjoints)
    out = f(x=np.float64(x))
    values = {k: v.item() for k, v in zip(NAMES + ["J"], out)}
    adjoint = {k: v.item() for k, v in zip(NAMES, out[len(NAMES) + 1:])}
    adjoint["J"] = 1.0
    print(f"J = cos(sin(x^2) + 3x^2) at x = {x}: forward top-down, backward bottom-up")
    print(f"  {'forward':<12} {'value':>10}   {'backward':<38} {'adjoint':>10}")
    for name, forward, backward in ROWS:
        print(f"  {forward:<12} {values[name]:>10.6f}   {backward:<38} {adjoint[name]:>10.6f}")
    return {"values": values, "adjoints": adjoint}


def main(x: float = 1.0, points: int = 101) -> dict:
    """The table at x; the generated gradient code; dJ/dx vs closed form on [-2, 2]."""
    g, n = build()
    adjoints = gc.grad(n["J"], [n[k] for k in NAMES])    # dJ/dx first
    result = table(g, n, adjoints, x)
    f = gc.function(g, [n["J"], adjoints[0]], backend="numpy")   # the readable reference
    print("\ngenerated NumPy code of gc.function(g, [J, dJ/dx]):")
    source = f.source
    print(source[source.index("def run("):])
    fast = gc.function(g, [n["J"], adjoints[0]])      # C where a compiler works
    c_kernels = "".join(k.source for k in fast.kernels)
    if c_kernels:
        print(f"the same as one C kernel ({fast.backend} backend):\n{c_kernels}")
    expr, exact = closed_form()
    grid = np.linspace(-2.0, 2.0, points)
    ours = np.array([fast(x=np.float64(v))[1].item() for v in grid])
    err = float(np.max(np.abs(ours - exact(grid))))
    print(f"closed form: dJ/dx = {expr}")
    print(f"  at x = {x}: graphc {result['adjoints']['x']:.12f}, closed form "
          f"{float(exact(x)):.12f}")
    print(f"  max |graphc - closed form| over {points} points in [-2, 2]: {err:.2e}")
    result.update(dJdx=result["adjoints"]["x"], closed_form=float(exact(x)), max_error=err,
                  source=source, c_source=c_kernels, backend=fast.backend)
    return result


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
