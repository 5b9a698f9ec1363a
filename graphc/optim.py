"""Optimizers as graph rewrites: each adds its update as `map` nodes (and its state as
untrained params), so updates show up in the generated code and run in place."""
from __future__ import annotations

import sympy

from . import exprs
from .graph import Graph


class SGD:
    """Stochastic gradient descent, optionally with (heavy-ball) momentum:
    v <- momentum*v + g;  w <- w - lr*v   (as torch.optim.SGD, dampening 0)."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.0):
        if lr <= 0:
            raise ValueError(f"SGD: lr must be positive, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum}")
        self.lr, self.momentum = lr, momentum

    def __repr__(self):
        return f"SGD(lr={self.lr}, momentum={self.momentum})"

    def build(self, g: Graph, params: list, grads: list) -> dict:
        """Add update nodes; return {param or state name: node holding its new value}."""
        lr = g.param(g.fresh("lr"), (), init=self.lr, trainable=False)
        w, d, rate = exprs.args(3)
        updates = {}
        for p, dp in zip(params, grads):
            if self.momentum:
                vel = g.param(g.fresh(f"{p}_velocity"), g.attrs(p)["shape"],
                              dtype=g.attrs(p)["dtype"], trainable=False)
                v_new = g.map(sympy.Float(self.momentum) * w + d, [vel, dp],
                              name=g.fresh(f"{p}_velocity_new"))
                updates[vel.name] = v_new.name
                step = v_new
            else:
                step = g.node(dp)
            updates[p] = g.map(w - rate * d, [p, step, lr], name=g.fresh(f"{p}_new")).name
        return updates
