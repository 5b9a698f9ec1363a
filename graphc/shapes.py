"""Shapes (tuples of ints or SymPy symbols) and dtypes: the rules every node is checked by."""
from __future__ import annotations

from typing import Iterable, Sequence, Union

import numpy as np
import sympy

from .errors import DtypeError, ShapeError

Dim = Union[int, sympy.Expr]
Shape = tuple

DTYPES = ("float32", "float64", "int64")
FLOAT_DTYPES = ("float32", "float64")


def sym(name: str) -> sympy.Symbol:
    """A symbolic dimension, e.g. the batch size `N`; bound from the feeds at run time."""
    return sympy.Symbol(name, integer=True, positive=True)


def check_dtype(dtype, where: str) -> str:
    """Normalise a dtype name or NumPy dtype to one of DTYPES."""
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in DTYPES:
        raise DtypeError(f"{where}: dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    return name


def is_float(dtype: str) -> bool:
    return dtype in FLOAT_DTYPES


def promote(dtypes: Iterable[str]) -> str:
    """Result dtype of an elementwise op: the widest float, else int64."""
    dtypes = list(dtypes)
    if "float64" in dtypes:
        return "float64"
    if "float32" in dtypes:
        return "float32"
    return "int64" if dtypes else "float32"


def as_dim(d, where: str) -> Dim:
    if isinstance(d, (int, np.integer)) and not isinstance(d, bool):
        if d < 0:
            raise ShapeError(f"{where}: negative dimension {d}")
        return int(d)
    if isinstance(d, sympy.Expr):
        if d.is_Integer:
            return int(d)
        return d
    raise ShapeError(f"{where}: dimension {d!r} is neither an int nor a SymPy symbol")


def as_shape(shape, where: str) -> Shape:
    if isinstance(shape, (int, np.integer, sympy.Expr)):
        shape = (shape,)
    return tuple(as_dim(d, where) for d in shape)


def fmt(shape: Sequence[Dim]) -> str:
    """(N, 64) — shapes as people write them."""
    inner = ", ".join(str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def same_dim(a: Dim, b: Dim) -> bool:
    """Equal dimensions; expand, not simplify (its first call imports half of SymPy)."""
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return a == b or sympy.expand(sympy.sympify(a) - b) == 0


def same_shape(a: Sequence[Dim], b: Sequence[Dim]) -> bool:
    """Equal shapes, symbolic dims compared by value."""
    return len(a) == len(b) and all(same_dim(x, y) for x, y in zip(a, b))


def broadcast(shapes: Sequence[Shape], where: str) -> Shape:
    """NumPy broadcasting of several shapes; a symbolic dim broadcasts only with itself or 1."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        dim: Dim = 1
        for d in dims:
            if d == 1:
                continue
            if dim == 1:
                dim = d
            elif not same_dim(dim, d):
                listed = ", ".join(fmt(s) for s in shapes)
                raise ShapeError(f"{where}: cannot broadcast shapes {listed} "
                                 f"(axis {i - rank}: {dim} vs {d})")
        out.append(dim)
    return tuple(out)


def size(shape: Sequence[Dim]) -> Dim:
    total: Dim = 1
    for d in shape:
        total = total * d
    return total


def normalize_axes(axis, rank: int, where: str) -> tuple:
    """axis=None | int | tuple -> sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(rank))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise ShapeError(f"{where}: axis {a} out of range for rank {rank}")
        out.append(int(a) % rank)
    if len(set(out)) != len(out):
        raise ShapeError(f"{where}: repeated axis in {axes}")
    return tuple(sorted(out))


def concrete(shape: Shape, dims: dict) -> tuple:
    """Substitute the bound values of symbolic dims; ints stay as they are."""
    return tuple(d if isinstance(d, int) else int(sympy.sympify(d).subs(dims)) for d in shape)
