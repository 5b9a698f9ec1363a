"""The closed set of primitives. Each one sits with its two rules: the shape/dtype rule,
checked when a node is added, and the VJP, used by the autodiff pass. Elementwise math
is one primitive, `map`, whose SymPy expression carries the op."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import sympy

from . import exprs, shapes
from .errors import DtypeError, ExprError, OpError, ShapeError


@dataclass(frozen=True)
class Primitive:
    name: str
    arity: int | None            # None: any number of arguments
    infer: Callable              # (where, args: [(shape, dtype)], attrs) -> (shape, dtype)
    vjp: Callable | None = None  # (graph, node, grad_node, i) -> contribution (maybe broadcast)


def _leaf(where, args, attrs):
    return attrs["shape"], attrs["dtype"]


# ---- map: elementwise SymPy expression over broadcast arguments -------------------------

def _infer_map(where, args, attrs):
    expr = attrs["expr"]
    allowed = {exprs.arg(i) for i in range(len(args))}
    for s in expr.free_symbols:
        if s not in allowed and exprs.arg_index(s) is not None:
            raise ExprError(f"{where}: expression {expr} names {s}, but the node has "
                            f"{len(args)} argument(s) (x0..x{len(args) - 1})")
        if s not in allowed and s not in attrs.get("dims", set()):
            raise ExprError(f"{where}: expression {expr} names {s}, which is neither an "
                            f"argument (x0..x{len(args) - 1}) nor a dimension of the graph")
    shape = shapes.broadcast([a[0] for a in args], where)
    dtype = attrs.get("dtype") or shapes.promote(a[1] for a in args)
    return shape, dtype


@functools.lru_cache(maxsize=1024)
def _local_derivative(expr: sympy.Expr, i: int) -> tuple[sympy.Expr, sympy.Symbol]:
    """(d expr / d x_i, the symbol standing for the output in it). Memoized: an unrolled
    network has the same expressions at every time step, and SymPy's diff is slow."""
    d = exprs.derivative(expr, exprs.arg(i))
    out = sympy.Dummy("out", real=True)
    via_out = d.subs(expr, out) if expr.free_symbols else d
    if out in via_out.free_symbols and sympy.count_ops(via_out) < sympy.count_ops(d):
        d = via_out
    return d, out


def _vjp_map(graph, node, grad, i):
    """g * d expr / d x_i; written through the node's own output where that is cheaper
    (sigmoid' = y(1-y), tanh' = 1-y**2, exp' = y) so backward reuses saved activations."""
    d, out = _local_derivative(graph.attrs(node)["expr"], i)
    if d == 0:
        return None
    fwd_args = graph.args(node)
    symbols = {exprs.arg(j): fwd_args[j] for j in range(len(fwd_args))}
    symbols[out] = node
    if d == 1:
        return grad
    used = sorted((s for s in d.free_symbols if s in symbols), key=lambda s: s.name)
    operands = [grad] + [symbols[s] for s in used]
    renamed = d.xreplace({s: exprs.arg(k + 1) for k, s in enumerate(used)})
    # g times a derivative that is a Piecewise (relu', a maximum's side) goes into its
    # branches, so a 0 branch selects 0 as torch's where/masked_fill do, not inf * 0 = nan;
    # only a top-level Piecewise: folding a sum of terms (BCE's) would change its rounding
    contribution = exprs.arg(0) * renamed
    if isinstance(renamed, sympy.Piecewise):
        contribution = sympy.piecewise_fold(contribution)
    return graph.map(contribution, operands, name=graph.fresh(f"d_{node}_x{i}"))


# ---- reduce: sum / max / min over axes ---------------------------------------------------

REDUCTIONS = ("sum", "max", "min")


def _infer_reduce(where, args, attrs):
    (shape, dtype), = args
    if attrs["fn"] not in REDUCTIONS:
        raise OpError(f"{where}: reduce fn {attrs['fn']!r} is not one of {REDUCTIONS}")
    axes = shapes.normalize_axes(attrs["axes"], len(shape), where)
    if attrs["keepdims"]:
        return tuple(1 if k in axes else d for k, d in enumerate(shape)), dtype
    return tuple(d for k, d in enumerate(shape) if k not in axes), dtype


def _vjp_reduce(graph, node, grad, i):
    """sum: broadcast g back; max/min: g split evenly over the elements equal to the
    result (torch.amax's rule for ties)."""
    a = graph.attrs(node)
    x = graph.args(node)[0]
    in_shape = graph.attrs(x)["shape"]
    kept = tuple(1 if k in a["axes"] else d for k, d in enumerate(in_shape))
    g = grad if a["keepdims"] else graph.reshape(grad, kept, name=graph.fresh(f"d_{node}_kept"))
    if a["fn"] == "sum":
        return graph.broadcast(g, in_shape, name=graph.fresh(f"d_{node}_bcast"))
    out = node if a["keepdims"] else graph.reshape(node, kept, name=graph.fresh(f"{node}_kept"))
    x0, x1, x2 = exprs.args(3)
    hit = graph.map(sympy.Piecewise((1, sympy.Eq(x0, x1)), (0, True)), [x, out],
                    name=graph.fresh(f"{node}_argmax"), dtype=graph.attrs(x)["dtype"])
    count = graph.reduce(hit, "sum", a["axes"], keepdims=True, name=graph.fresh(f"{node}_ties"))
    return graph.map(x0 * x1 / x2, [g, hit, count], name=graph.fresh(f"d_{node}_x0"))


# ---- matmul ------------------------------------------------------------------------------

def _infer_matmul(where, args, attrs):
    (sa, da), (sb, db) = args
    if len(sa) < 2 or len(sb) < 2:
        raise ShapeError(f"{where}: matmul needs operands of rank >= 2, got {shapes.fmt(sa)} "
                         f"@ {shapes.fmt(sb)} (reshape vectors to (1, n) or (n, 1))")
    if not shapes.same_dim(sa[-1], sb[-2]):
        raise ShapeError(f"{where}: matmul inner dimensions differ: {shapes.fmt(sa)} @ "
                         f"{shapes.fmt(sb)} ({sa[-1]} vs {sb[-2]})")
    batch = shapes.broadcast([sa[:-2], sb[:-2]], where)
    return batch + (sa[-2], sb[-1]), shapes.promote([da, db])


def _swap_last(graph, x, name):
    rank = len(graph.attrs(x)["shape"])
    return graph.permute(x, tuple(range(rank - 2)) + (rank - 1, rank - 2),
                         name=graph.fresh(name))


def _vjp_matmul(graph, node, grad, i):
    """dA = g @ B^T, dB = A^T @ g (batch broadcasting undone by the caller)."""
    a, b = graph.args(node)
    if i == 0:
        return graph.matmul(grad, _swap_last(graph, b, f"{b}_T"), name=graph.fresh(f"d_{node}_x0"))
    return graph.matmul(_swap_last(graph, a, f"{a}_T"), grad, name=graph.fresh(f"d_{node}_x1"))


# ---- layout: permute, reshape, broadcast -------------------------------------------------

def _infer_permute(where, args, attrs):
    (shape, dtype), = args
    perm = tuple(attrs["perm"])
    if sorted(perm) != list(range(len(shape))):
        raise ShapeError(f"{where}: perm {perm} is not a permutation of the axes of "
                         f"{shapes.fmt(shape)}")
    return tuple(shape[p] for p in perm), dtype


def _vjp_permute(graph, node, grad, i):
    perm = graph.attrs(node)["perm"]
    inverse = tuple(int(k) for k in np.argsort(perm))
    return graph.permute(grad, inverse, name=graph.fresh(f"d_{node}_x0"))


def _infer_reshape(where, args, attrs):
    (shape, dtype), = args
    target = attrs["shape"]
    if not shapes.same_dim(shapes.size(shape), shapes.size(target)):
        raise ShapeError(f"{where}: cannot reshape {shapes.fmt(shape)} "
                         f"({shapes.size(shape)} elements) to {shapes.fmt(target)} "
                         f"({shapes.size(target)} elements)")
    return target, dtype


def _vjp_reshape(graph, node, grad, i):
    x = graph.args(node)[0]
    return graph.reshape(grad, graph.attrs(x)["shape"], name=graph.fresh(f"d_{node}_x0"))


def _infer_broadcast(where, args, attrs):
    (shape, dtype), = args
    target = attrs["shape"]
    try:
        result = shapes.broadcast([shape, target], where)
    except ShapeError:
        result = None
    if result is None or len(result) != len(target) or \
            not all(shapes.same_dim(r, t) for r, t in zip(result, target)):
        raise ShapeError(f"{where}: cannot broadcast {shapes.fmt(shape)} to "
                         f"{shapes.fmt(target)}")
    return target, dtype


def _vjp_broadcast(graph, node, grad, i):
    return grad  # the autodiff pass sums broadcast axes away for every op in one place


# ---- leaves with a rule: iota, rand, const -----------------------------------------------------

def _infer_iota(where, args, attrs):
    shape = attrs["shape"]
    if not 0 <= attrs["axis"] < len(shape):
        raise ShapeError(f"{where}: iota axis {attrs['axis']} out of range for "
                         f"{shapes.fmt(shape)}")
    return shape, attrs["dtype"]


def _infer_rand(where, args, attrs):
    """rand reads one argument, the graph's step counter (a float scalar), so a compiled
    step draws new numbers each call and the dependence shows in the graph."""
    (shape, dtype), = args
    if tuple(shape) != () or not shapes.is_float(dtype):
        raise ShapeError(f"{where}: rand reads a scalar float step counter, got "
                         f"{shapes.fmt(shape)} {dtype}")
    if not shapes.is_float(attrs["dtype"]):
        raise DtypeError(f"{where}: rand draws floats in [0, 1), not {attrs['dtype']}")
    return attrs["shape"], attrs["dtype"]


def _infer_const(where, args, attrs):
    value = attrs["value"]
    if value.dtype.name != attrs["dtype"]:
        raise DtypeError(f"{where}: const value has dtype {value.dtype}, node says "
                         f"{attrs['dtype']}")
    return tuple(value.shape), attrs["dtype"]


PRIMITIVES = {p.name: p for p in [
    Primitive("input", 0, _leaf),
    Primitive("param", 0, _leaf),
    Primitive("const", 0, _infer_const),
    Primitive("iota", 0, _infer_iota),
    Primitive("rand", 1, _infer_rand),
    Primitive("map", None, _infer_map, _vjp_map),
    Primitive("reduce", 1, _infer_reduce, _vjp_reduce),
    Primitive("matmul", 2, _infer_matmul, _vjp_matmul),
    Primitive("permute", 1, _infer_permute, _vjp_permute),
    Primitive("reshape", 1, _infer_reshape, _vjp_reshape),
    Primitive("broadcast", 1, _infer_broadcast, _vjp_broadcast),
]}

# no gradient flows through a leaf; rand is one though it reads the step counter
LEAVES = ("input", "param", "const", "iota", "rand")
# views have no storage of their own (and no kernel): they read their argument's, strided
VIEWS = ("permute", "reshape", "broadcast")
# ---- node attributes that say where a node came from, not what it computes ------------------
# provenance only: two nodes that compute the same value merge (cse) whatever these say
# (fused_from, fused_exprs: the nodes fusion merged into a map and their expressions)
PROVENANCE = frozenset({"index", "adjoint_of", "fused_from", "fused_exprs"})
# what a pass keeps when it rewrites a node as another op (simplify, constfold): its type,
# its provenance, and stop_gradient, which changes what autodiff does with it
KEPT_ON_REWRITE = ("shape", "dtype", *sorted(PROVENANCE), "stop_gradient")

# leaves whose storage is given from outside the generated code (rand's is drawn into a
# buffer the code owns)
OWN_STORAGE = ("input", "param", "const", "iota")


def primitive(op: str, where: str) -> Primitive:
    try:
        return PRIMITIVES[op]
    except KeyError:
        raise OpError(f"{where}: unknown op {op!r}; primitives are "
                      f"{', '.join(PRIMITIVES)}") from None
