"""The builder API: elementwise functions (one SymPy expression each), reductions, layout,
and composite layers and losses that emit primitives only."""
from __future__ import annotations

import math

import numpy as np
import sympy
from sympy import Piecewise

from . import exprs, functions, init as initializers, shapes
from .errors import DtypeError, ShapeError
from .graph import Node

# ---- elementwise ops: each is one SymPy expression; derivatives come from sympy.diff ---------

# The kinks test `x <= 0` and leave x as the default: relu'(0) = 0 as PyTorch, and a NaN
# fails every comparison, so it falls through to x (NaN out) with the derivative PyTorch
# gives it (relu'(nan) = hard_tanh'(nan) = elu'(nan) = 1; leaky_relu'(nan) = slope).
def _relu(x):
    return Piecewise((0, x <= 0), (x, True))


def _leaky_relu(x, slope=0.01):
    return Piecewise((x, x > 0), (slope * x, True))


def _elu(x, alpha=1.0):
    return Piecewise((alpha * exprs.expm1(x), x <= 0), (x, True))


def _hard_tanh(x):
    # bounds inclusive: the gradient is 0 at -1 and 1, as PyTorch
    return Piecewise((-1, x <= -1), (1, x >= 1), (x, True))


def _gelu(x):
    """x * Phi(x), Phi the normal CDF by erf: F.gelu(x, approximate="none")."""
    return x / 2 * (1 + sympy.erf(x / sympy.sqrt(2)))


def _gelu_tanh(x):
    """GELU's tanh approximation, F.gelu(x, approximate="tanh")."""
    inner = sympy.sqrt(2 / sympy.pi) * (x + sympy.Float(0.044715) * x ** 3)
    return x / 2 * (1 + sympy.tanh(inner))


# ops that are an expression over the table's functions rather than one of them
COMPOSITES = {
    "relu": _relu,
    "leaky_relu": _leaky_relu,
    "elu": _elu,
    "softsign": lambda x: x / (1 + sympy.Abs(x)),
    "hard_tanh": _hard_tanh,
    "sqrt": sympy.sqrt,
    "square": lambda x: x ** 2,
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "silu": lambda x: x * exprs.sigmoid(x),
}
# every elementwise op: the functions of graphc/functions.py that have a builder name, then
# the composites
ELEMENTWISE = {
    **{s.builder: fn for fn, s in functions.FUNCTIONS.items() if s.builder}, **COMPOSITES,
}


def real_number(value, what: str, where: str) -> float | int:
    """A finite real number as a Python number (an int when whole, so that alpha=1.0 adds
    no `1.0*` to expressions), else a ValueError saying where it was passed."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise ValueError(f"{where}: {what} must be a finite real number, got {value!r}")
    return int(value) if float(value).is_integer() else float(value)


def _float_only(fn) -> bool:
    """An op whose value at an integer is not known to be an integer (tanh, x/(1+|x|))."""
    return not fn(sympy.Symbol("n", integer=True)).is_integer


# ops whose values are not integers: an int64 argument is refused rather than promoted
# (torch promotes to its default float; graphc makes the conversion explicit instead)
FLOAT_ONLY = {op for op, fn in ELEMENTWISE.items() if _float_only(fn)}


def require_float(x: Node, what: str) -> None:
    """A DtypeError naming `what` and the node if x is an integer tensor."""
    if isinstance(x, Node) and not shapes.is_float(x.dtype):
        raise DtypeError(f"{what} of {x.name!r} ({x.op} {shapes.fmt(x.shape)} {x.dtype}): needs "
                         f"a float input; integers are not promoted implicitly: convert with "
                         f"g.map('x0', [{x.name!r}], dtype='float32')")


def elementwise(op: str, x: Node, name: str | None = None, **params) -> Node:
    """Apply one of ELEMENTWISE to a node; params (a slope, an alpha) are plain numbers."""
    fn = ELEMENTWISE[op]
    where = f"{op} of {getattr(x, 'name', x)!r}"
    if op in FLOAT_ONLY:
        require_float(x, op)
    params = {k: real_number(v, k, where) for k, v in params.items()}
    return x.graph.apply(lambda s: fn(s, **params), [x], name=name, hint=op)


def sigmoid(x, name=None): return elementwise("sigmoid", x, name)
def tanh(x, name=None): return elementwise("tanh", x, name)
def relu(x, name=None): return elementwise("relu", x, name)
def leaky_relu(x, slope=0.01, name=None): return elementwise("leaky_relu", x, name, slope=slope)
def elu(x, alpha=1.0, name=None): return elementwise("elu", x, name, alpha=alpha)
def softplus(x, name=None): return elementwise("softplus", x, name)
def softsign(x, name=None): return elementwise("softsign", x, name)
def hard_tanh(x, name=None): return elementwise("hard_tanh", x, name)
def abs(x, name=None): return elementwise("abs", x, name)  # noqa: A001 - mirrors numpy
def exp(x, name=None): return elementwise("exp", x, name)
def log(x, name=None): return elementwise("log", x, name)
def sin(x, name=None): return elementwise("sin", x, name)
def cos(x, name=None): return elementwise("cos", x, name)
def sqrt(x, name=None): return elementwise("sqrt", x, name)
def square(x, name=None): return elementwise("square", x, name)
def silu(x, name=None): return elementwise("silu", x, name)


def gelu(x, approximate: str = "none", name=None):
    """x * Phi(x) (Phi the normal CDF, by erf), or with approximate="tanh" its tanh
    approximation, as torch.nn.functional.gelu."""
    forms = {"none": "gelu", "tanh": "gelu_tanh"}
    if approximate not in forms:
        raise ValueError(f"gelu of {getattr(x, 'name', x)!r}: approximate must be 'none' or "
                         f"'tanh', got {approximate!r}")
    return elementwise(forms[approximate], x, name)


def maximum(a, b, name=None):
    """Elementwise max; at ties each side gets half the gradient, as torch.maximum."""
    g = a.graph if isinstance(a, Node) else b.graph
    return g.apply(sympy.Max, [a, b], name=name, hint="maximum")


def minimum(a, b, name=None):
    g = a.graph if isinstance(a, Node) else b.graph
    return g.apply(sympy.Min, [a, b], name=name, hint="minimum")


def stop_gradient(x: Node, name=None) -> Node:
    """The same values, seen by autodiff as a constant."""
    y = x.graph.map(exprs.arg(0), [x], name=name, hint="nograd")
    x.graph.nx.nodes[y.name]["stop_gradient"] = True
    return y


# ---- reductions and layout ----------------------------------------------------------------

def sum(x: Node, axis=None, keepdims=False, name=None) -> Node:  # noqa: A001
    return x.graph.reduce(x, "sum", axis, keepdims, name=name)


def _nonempty(x: Node, axis, fn: str, name) -> None:
    """torch.amax refuses an empty axis (a max of nothing); so does graphc, when the size is
    known. A symbolic axis that is 0 at run time gives -inf (+inf for min), the identity."""
    rank = len(x.shape)
    axes = shapes.normalize_axes(axis, rank, f"{fn} of {x.name!r}")
    empty = [k for k in axes if x.shape[k] == 0]
    if empty:
        raise ShapeError(f"node {name or '<new reduce>'!r} ({fn} of {x.name!r}): cannot take "
                         f"the {fn} over axis {empty[0]} of size 0 (shape {shapes.fmt(x.shape)})")


def max(x: Node, axis=None, keepdims=False, name=None) -> Node:  # noqa: A001
    """Max over axes; the gradient is shared evenly by tied maxima, as torch.amax."""
    _nonempty(x, axis, "max", name)
    return x.graph.reduce(x, "max", axis, keepdims, name=name)


def min(x: Node, axis=None, keepdims=False, name=None) -> Node:  # noqa: A001
    _nonempty(x, axis, "min", name)
    return x.graph.reduce(x, "min", axis, keepdims, name=name)


def mean(x: Node, axis=None, keepdims=False, name=None) -> Node:
    """sum / count; the count may be symbolic (N), bound from the feeds at run time."""
    axes = shapes.normalize_axes(axis, len(x.shape), f"mean of {x.name!r}")
    total = x.graph.reduce(x, "sum", axes, keepdims)
    count = shapes.size([x.shape[a] for a in axes])
    return x.graph.apply(lambda s: s / count, [total], name=name, hint="mean")


def matmul(a: Node, b: Node, name=None) -> Node:
    return a.graph.matmul(a, b, name=name)


def transpose(x: Node, perm=None, name=None) -> Node:
    perm = tuple(reversed(range(len(x.shape)))) if perm is None else perm
    return x.graph.permute(x, perm, name=name)


def reshape(x: Node, shape, name=None) -> Node:
    return x.graph.reshape(x, shape, name=name)


def broadcast_to(x: Node, shape, name=None) -> Node:
    return x.graph.broadcast(x, shape, name=name)


# ---- composites ---------------------------------------------------------------------------

def linear(x: Node, out_features: int, name: str | None = None, bias: bool = True,
           init=None) -> Node:
    """x @ W + b with params `<name>_W` (in, out), Glorot-uniform, and `<name>_b`, zeros."""
    g = x.graph
    name = name or g.unique_name("linear")
    W = g.param(f"{name}_W", (x.shape[-1], out_features),
                init if init is not None else initializers.xavier_uniform())
    y = g.matmul(x, W, name=f"{name}_mm" if bias else name)
    if not bias:
        return y
    b = g.param(f"{name}_b", (out_features,))
    return g.apply(lambda a, c: a + c, [y, b], name=name, hint="add")


def _lse(x: Node, axis: int):
    """Stable log-sum-exp: m + log(sum(exp(x - m))), the max held constant for autodiff
    (its gradient contributions cancel exactly, so they are never computed)."""
    g = x.graph
    require_float(x, "log-sum-exp (softmax, log_softmax, cross-entropy)")
    m = g.reduce(x, "max", axis, keepdims=True)
    g.nx.nodes[m.name]["stop_gradient"] = True
    shifted = g.apply(lambda a, b: a - b, [x, m], hint="sub")
    total = g.reduce(g.apply(sympy.exp, [shifted], hint="exp"), "sum", axis, keepdims=True)
    return m, shifted, total


def logsumexp(x: Node, axis=-1, keepdims: bool = False, name=None) -> Node:
    """log(sum(exp(x))) over `axis`, as torch.logsumexp: the max m is subtracted first, and
    m is clamped to the finite range so that a row of -inf gives -inf and a +inf gives +inf
    (an unclamped shift computes -inf - (-inf) = nan)."""
    require_float(x, "logsumexp")
    g = x.graph
    m = g.reduce(x, "max", axis, keepdims=True)
    g.nx.nodes[m.name]["stop_gradient"] = True  # its contributions cancel exactly
    big = sympy.Float(float(np.finfo(x.dtype).max))

    def shift(b):
        return sympy.Max(sympy.Min(b, big), -big)
    e = g.apply(lambda a, b: sympy.exp(a - shift(b)), [x, m], hint="exp")
    total = g.reduce(e, "sum", axis, keepdims=keepdims)
    if not keepdims:
        m = g.reshape(m, total.shape)
    return g.apply(lambda b, t: shift(b) + sympy.log(t), [m, total], name=name,
                   hint="logsumexp")


def softmax(x: Node, axis: int = -1, name=None) -> Node:
    _, shifted, total = _lse(x, axis)
    return x.graph.apply(lambda s, t: sympy.exp(s) / t, [shifted, total], name=name, hint="softmax")


def log_softmax(x: Node, axis: int = -1, name=None) -> Node:
    _, shifted, total = _lse(x, axis)
    return x.graph.apply(lambda s, t: s - sympy.log(t), [shifted, total], name=name,
                         hint="log_softmax")


def one_hot(labels: Node, classes: int, dtype: str | None = None, name=None) -> Node:
    """labels (..., ) int -> (..., classes) float: 1 where the class index equals the label."""
    g = labels.graph
    col = g.reshape(labels, tuple(labels.shape) + (1,))
    idx = g.iota((classes,), 0)
    return g.apply(lambda a, b: Piecewise((1, sympy.Eq(a, b)), (0, True)), [col, idx],
                   name=name, hint="one_hot", dtype=dtype or g.dtype)


def softmax_cross_entropy(logits: Node, labels: Node, name=None) -> Node:
    """Mean over the batch of -log softmax(logits)[label]; labels int64 of shape (N,) or
    float probabilities of the logits' shape."""
    g = logits.graph
    where = f"softmax_cross_entropy({logits.name!r}, {labels.name!r})"
    if labels.dtype == "int64":
        if len(labels.shape) != len(logits.shape) - 1 or not all(
                shapes.same_dim(a, b) for a, b in zip(labels.shape, logits.shape[:-1])):
            raise ShapeError(f"{where}: integer labels of shape {shapes.fmt(labels.shape)} do "
                             f"not match logits {shapes.fmt(logits.shape)} minus the class axis")
        # the label's shifted logit z - max selected (not multiplied by a one-hot: 0 * -inf
        # would be nan); per row log(sum) - (z_label - max), where max + log(sum) - z_label
        # rounds log(sum) away when |max| >> 1 (1e30 + log 2 == 1e30: a loss of 0, not log 2)
        _, shifted, total = _lse(logits, -1)
        col = g.reshape(labels, tuple(labels.shape) + (1,))
        terms = g.apply(lambda a, b, z: Piecewise((z, sympy.Eq(a, b)), (0, True)),
                        [col, g.iota((logits.shape[-1],), 0), shifted], hint="pick")
        picked = g.reduce(terms, "sum", -1, keepdims=True)
        per_row = g.apply(lambda s, p: sympy.log(s) - p, [total, picked], hint="nll")
        return _batch_mean(g, per_row, logits, name)
    if not shapes.is_float(labels.dtype):
        raise DtypeError(f"{where}: labels must be int64 classes or float probabilities")
    shapes.broadcast([labels.shape, logits.shape], where)
    terms = g.apply(lambda t, z: t * z, [labels, logits], hint="mul")
    # per row: logsumexp(z) - sum(t * z), which equals -sum(t * log_softmax(z)) for targets
    # summing to 1; in this form the backward is softmax(z) - t with no log_softmax kept
    m, _, total = _lse(logits, -1)
    picked = g.reduce(terms, "sum", -1, keepdims=True)
    per_row = g.apply(lambda mx, s, p: mx + sympy.log(s) - p, [m, total, picked],
                      hint="nll")
    return _batch_mean(g, per_row, logits, name)


def _batch_mean(g, per_row: Node, logits: Node, name) -> Node:
    batch = shapes.size(logits.shape[:-1])
    return g.apply(lambda s: s / batch, [g.reduce(per_row, "sum")], name=name,
                   hint="cross_entropy")


def mse(pred: Node, target: Node, half: bool = False, reduction: str = "mean",
        name=None) -> Node:
    """Mean (or sum) of squared errors; half=True gives the course's 1/2 (t - y)^2."""
    g = pred.graph
    sq = g.apply(lambda p, t: (p - t) ** 2, [pred, target], hint="sqerr")
    total = g.reduce(sq, "sum")
    scale = sympy.Rational(1, 2) if half else 1
    if reduction == "mean":
        scale = scale / shapes.size(g.attrs(sq.name)["shape"])
    elif reduction != "sum":
        raise ValueError(f"mse reduction must be 'mean' or 'sum', got {reduction!r}")
    return g.apply(lambda s: scale * s, [total], name=name, hint="mse")


def _training_only(x: Node, expr, seed, name, hint: str, draws: str) -> Node:
    """map(expr)(x, u) with u = rand(x.shape) named `<name>_<draws>`: the node acts in
    training and is the identity of x in evaluation (passes/modes.py)."""
    if not shapes.is_float(x.dtype):
        raise DtypeError(f"{hint} of {x.name!r}: needs a float input, got {x.dtype}")
    g = x.graph
    u = g.rand(x.shape, seed=seed, dtype=x.dtype, name=g.fresh(f"{name}_{draws}") if name else None)
    y = g.map(expr, [x, u], name=name, hint=hint)
    g.attrs(y.name)["training_only"] = True
    return y


def dropout(x: Node, p: float = 0.5, seed: int | None = None, name=None) -> Node:
    """Inverted dropout: in training each element is kept with probability 1 - p and
    scaled by 1 / (1 - p), so evaluation needs no rescaling; in evaluation (gc.function,
    step.evaluate, step.function) the node is the identity. The mask is a `rand` node,
    new at every step and the same for a given seed on a given backend."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout {name or ''}: p must be in [0, 1), got {p}")
    if p == 0:
        return x
    keep = Piecewise((sympy.Float(1 / (1 - p)), exprs.arg(1) >= sympy.Float(p)), (0, True))
    return _training_only(x, exprs.arg(0) * keep, seed, name, "dropout", "mask")


def noise(x: Node, std: float, seed: int | None = None, name=None) -> Node:
    """Additive zero-mean noise in training, x + std * sqrt(3) * (2u - 1) with u uniform
    (a denoising autoencoder's corruption); the identity in evaluation, like dropout."""
    if not std >= 0:
        raise ValueError(f"noise {name or ''}: std must be >= 0, got {std}")
    spread = sympy.Float(std * 3 ** 0.5)
    return _training_only(x, exprs.arg(0) + spread * (2 * exprs.arg(1) - 1), seed, name,
                          "noise", "u")
