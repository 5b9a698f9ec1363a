"""Activation layers with learned parameters, as composites of primitives: parametric ReLU
(a learned slope) and maxout (the max of k learned linear pieces)."""
from __future__ import annotations

import numpy as np

from . import init as initializers
from .builder import ELEMENTWISE, real_number
from .errors import ShapeError
from .graph import Node


def prelu(x: Node, name: str | None = None, init: float = 0.25,
          per_channel: bool = False) -> Node:
    """Parametric ReLU: x where x > 0, else a*x, with the slope a a param `<name>_slope`
    initialised to `init`: a scalar (shape ()), or with per_channel=True one slope per
    channel of the last axis (shape (C,)). prelu'(0) = a, as torch.nn.functional.prelu."""
    g = x.graph
    name = name or g.unique_name("prelu")
    where = f"prelu {name!r} of {x.name!r}"
    init = real_number(init, "init", where)
    shape: tuple = ()
    if per_channel:
        channels = x.shape[-1] if x.shape else None
        if not isinstance(channels, int):
            raise ValueError(f"{where}: per_channel needs a concrete last axis, x has shape "
                             f"{tuple(x.shape)}")
        shape = (channels,)
    slope = g.param(f"{name}_slope", shape, init=np.full(shape, init))
    # the leaky ReLU expression with the slope as a second argument: d/da = x where x <= 0
    return g.apply(lambda v, a: ELEMENTWISE["leaky_relu"](v, a), [x, slope], name=name,
                   hint="prelu")


def _count(value, what: str, least: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{where}: {what} must be an int >= {least}, got {value!r}")
    return int(value)


def maxout(x: Node, out_features: int, pieces: int, name: str | None = None,
           init=None) -> Node:
    """Maxout (Goodfellow et al. 2013): h_i = max_j (x @ W + b)[i, j] over `pieces` linear
    pieces per output. One linear map to out_features * pieces columns (params `<name>_W`,
    Glorot-uniform, and `<name>_b`, zeros), reshaped to (..., out_features, pieces), then a
    max over the last axis: tied pieces share the gradient evenly, as torch.amax."""
    g = x.graph
    name = name or g.unique_name("maxout")
    where = f"maxout {name!r} of {x.name!r}"
    out_features = _count(out_features, "out_features", 1, where)
    pieces = _count(pieces, "pieces", 2, where)
    if not x.shape:
        raise ShapeError(f"{where}: x must have a feature axis, got shape ()")
    width = out_features * pieces
    W = g.param(f"{name}_W", (x.shape[-1], width),
                initializers.xavier_uniform() if init is None else init)
    mm = g.matmul(x, W, name=f"{name}_mm")
    b = g.param(f"{name}_b", (width,))
    z = g.apply(lambda a, c: a + c, [mm, b], name=f"{name}_z", hint="add")
    # columns o*pieces .. o*pieces + pieces-1 are the pieces of output o
    grouped = g.reshape(z, tuple(x.shape[:-1]) + (out_features, pieces), name=f"{name}_pieces")
    return g.reduce(grouped, "max", -1, name=name)
