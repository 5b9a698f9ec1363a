"""Random programs: lists of records that name earlier records by index, valid by
construction (shapes broadcast, domains guarded), deterministic per numpy seed.

Records (k is the record's own index, i/j earlier records):
  ('leaf', 'input'|'param', shape)      ('labels', shape, classes)  int64 class indices
  ('unary', op, i)                      ('binary', op, i, j)
  ('reduce', fn, i, axes, keepdims)     ('matmul', i, j)
  ('transpose', i, perm)                ('reshape', i, shape)       ('broadcast', i, shape)
  ('softmax'|'log_softmax', i, axis)    ('logsumexp', i, axis, keepdims)
  ('xent', i, j)  j a labels record     ('mse', i, j)               ('linear', i, out)
"""
from __future__ import annotations

import numpy as np

import graphc as gc

# every builder op (gc.ELEMENTWISE, references in tests/torch_reference.py) but log and sqrt,
# which come domain-guarded (log(x^2 + 1), sqrt(x^2 + 0.5)), then two plain affine maps
COMPOUND = ["log_x2p1", "sqrt_x2p05", "scale", "neg"]
UNARY = [op for op in gc.ELEMENTWISE if op not in ("log", "sqrt")] + COMPOUND
PARAMS = {"leaky_relu": (0.1,), "elu": (0.7,)}  # the parameters of the parametric ops
# left out with special values: torch's own hardtanh'(nan) (0 or 1) and elu'(nan) (1 or
# nan) depend on the element's position (vectorized lanes vs the scalar tail), so there is
# nothing to agree with; torch's abs'(nan) is 0 (sgn), graphc's sign(nan) is nan (known,
# KNOWN_NAN_GRAD in tests/test_edge_cases.py); torch's softsign is x / (1 + |x|) in
# autograd, whose two paths give inf - inf * 0 = nan under an infinite upstream gradient
# where graphc's one derivative 1 / (1 + |x|)**2 gives inf
# where graphc's one derivative 1 / (1 + |x|)**2 gives inf; sin and cos of a value near
# 1e30 (one ulp is 1e14) depend on its last bit, i.e. on summation order in a matmul;
# gelu, gelu_tanh and silu: on the C backend in float32 they give NaN at infinite inputs
# where torch gives a number (fuzz seed 9, graphs 16, 41, 137): a known, open defect
SPECIAL_UNARY = [u for u in UNARY if u not in ("hard_tanh", "elu", "abs", "softsign", "sin",
                                                "cos", "gelu", "gelu_tanh", "silu")]
BINARY = ["add", "sub", "mul", "div", "maximum", "minimum"]
REDUCE = ["sum", "max", "min", "mean"]
# weights of each kind; composites and layout are rarer than elementwise math
KINDS = {"unary": 6, "binary": 6, "reduce": 3, "matmul": 2, "transpose": 2, "reshape": 1,
         "broadcast": 1, "softmax": 1, "log_softmax": 1, "logsumexp": 1, "xent": 1, "mse": 1,
         "linear": 1}
MAX_RANK = 4


def args_of(rec: tuple) -> list:
    """The record indices a record reads."""
    kind = rec[0]
    if kind in ("leaf", "labels"):
        return []
    if kind in ("binary",):
        return [rec[2], rec[3]]
    if kind in ("matmul", "xent", "mse"):
        return [rec[1], rec[2]]
    if kind in ("unary", "reduce"):
        return [rec[2]]
    return [rec[1]]


def shape_of(rec: tuple, shapes: list) -> tuple:
    """The shape a record produces, given the shapes of the records before it."""
    kind = rec[0]
    if kind in ("leaf", "labels"):
        return tuple(rec[2] if kind == "leaf" else rec[1])
    if kind == "unary":
        return shapes[rec[2]]
    if kind == "binary":
        return tuple(np.broadcast_shapes(shapes[rec[2]], shapes[rec[3]]))
    if kind == "reduce":
        s, axes, keep = shapes[rec[2]], rec[3], rec[4]
        red = set(range(len(s))) if axes is None else set(axes)
        return tuple(1 if k in red else d for k, d in enumerate(s) if keep or k not in red)
    if kind == "matmul":
        a, b = shapes[rec[1]], shapes[rec[2]]
        return tuple(np.broadcast_shapes(a[:-2], b[:-2])) + (a[-2], b[-1])
    if kind == "transpose":
        return tuple(shapes[rec[1]][p] for p in rec[2])
    if kind in ("reshape", "broadcast"):
        return tuple(rec[2])
    if kind in ("softmax", "log_softmax"):
        return shapes[rec[1]]
    if kind == "logsumexp":
        s, ax, keep = shapes[rec[1]], rec[2] % len(shapes[rec[1]]), rec[3]
        return tuple(1 if k == ax else d for k, d in enumerate(s) if keep or k != ax)
    if kind in ("xent", "mse"):
        return ()
    return shapes[rec[1]][:-1] + (rec[2],)  # linear


def shapes_of(prog: list) -> list:
    out: list = []
    for rec in prog:
        out.append(shape_of(rec, out))
    return out


def is_float(rec: tuple) -> bool:
    return rec[0] != "labels"


class _Gen:
    """One program being drawn: the records so far and their shapes."""

    def __init__(self, rng: np.random.Generator, max_dim: int, distinct: bool = False):
        self.rng, self.max_dim, self.distinct = rng, max_dim, distinct
        self.prog: list = []
        self.shapes: list = []

    def add(self, rec: tuple) -> int:
        self.shapes.append(shape_of(rec, self.shapes))
        self.prog.append(rec)
        return len(self.prog) - 1

    def dims(self, lo: int, hi: int) -> tuple:
        return tuple(int(d) for d in self.rng.integers(1, self.max_dim + 1,
                                                       self.rng.integers(lo, hi + 1)))

    def leaf(self, shape) -> int:
        kind = "input" if self.rng.random() < 0.5 else "param"
        return self.add(("leaf", kind, tuple(int(d) for d in shape)))

    def pick(self, ok) -> int | None:
        """An earlier float record satisfying ok(shape), the recent ones more likely (long
        chains), older ones often enough that values fan out to several users."""
        cands = [k for k, s in enumerate(self.shapes) if is_float(self.prog[k]) and ok(s)]
        if not cands:
            return None
        w = np.arange(1, len(cands) + 1, dtype=float) ** 1.5
        return int(cands[self.rng.choice(len(cands), p=w / w.sum())])

    def partner(self, s: tuple, i: int) -> int:
        """A record broadcasting against s: an earlier one (maybe i itself, x * x) or a new
        leaf. `distinct`: never i (see program())."""
        if self.rng.random() < 0.5:
            j = self.pick(lambda t: _broadcasts(s, t))
            if j is not None and not (self.distinct and _base(self.prog, self.shapes, j) ==
                                      _base(self.prog, self.shapes, i)):
                return j
        keep = int(self.rng.integers(0, len(s) + 1))
        return self.leaf([d if self.rng.random() < 0.6 else 1 for d in s[len(s) - keep:]])


def _broadcasts(a: tuple, b: tuple) -> bool:
    try:
        return len(np.broadcast_shapes(a, b)) <= MAX_RANK
    except ValueError:
        return False


def _reshape_target(gen: _Gen, s: tuple) -> tuple:
    size = int(np.prod(s))
    options = [(size,), (1, size), tuple(reversed(s)), s + (1,)]
    options += [(2, size // 2)] if size % 2 == 0 and size > 2 else []
    options = [o for o in options if len(o) <= MAX_RANK]
    return options[int(gen.rng.integers(len(options)))]


def _broadcast_target(gen: _Gen, s: tuple) -> tuple:
    grown = tuple(int(gen.rng.integers(2, gen.max_dim + 1)) if d == 1 and gen.rng.random() < 0.7
                  else d for d in s)
    lead = () if len(s) >= 3 else gen.dims(0, 3 - len(s))
    return lead + grown


def _draw_op(gen: _Gen, kind: str):
    """One record of `kind`, or None when no earlier value fits it."""
    rng = gen.rng
    need = {"reduce": 1, "matmul": 2, "transpose": 2, "softmax": 1, "log_softmax": 1,
            "logsumexp": 1, "xent": 1, "linear": 2}.get(kind, 0)
    i = gen.pick(lambda s: need <= len(s) <= (MAX_RANK if kind != "matmul" else 3))
    if i is None:
        return None
    s = gen.shapes[i]
    if kind == "unary":
        ops = SPECIAL_UNARY if gen.distinct else UNARY
        return ("unary", ops[rng.integers(len(ops))], i)
    if kind == "binary":
        return ("binary", BINARY[rng.integers(len(BINARY))], i, gen.partner(s, i))
    if kind == "reduce":
        axes = None if rng.random() < 0.3 else tuple(sorted(
            {int(a) for a in rng.integers(0, len(s), rng.integers(1, len(s) + 1))}))
        rec = ("reduce", REDUCE[rng.integers(len(REDUCE))], i, axes, bool(rng.random() < 0.5))
        return rec if not gen.distinct or special_ok([*gen.prog, rec]) else None
    if kind == "matmul":
        batch = s[:-2] if rng.random() < 0.5 else ()
        j = gen.leaf(batch + (s[-1], int(rng.integers(1, gen.max_dim + 1))))
        return ("matmul", i, j)
    if kind == "transpose":
        return ("transpose", i, tuple(int(p) for p in rng.permutation(len(s))))
    if kind == "reshape":
        return ("reshape", i, _reshape_target(gen, s))
    if kind == "broadcast":
        return ("broadcast", i, _broadcast_target(gen, s))
    if kind == "logsumexp" and gen.distinct:
        # torch.logsumexp's backward exp(x - lse) loses its digits when |lse| >> 1: two
        # tied 1e30 maxima get 1 each (1e30 + log 2 == 1e30), the true 1/2 is graphc's
        return None
    if kind in ("softmax", "log_softmax", "logsumexp"):
        axes = [a for a in range(-1, len(s)) if s[a] > 1 or not gen.distinct]
        if not axes:
            return None
        axis = axes[int(rng.integers(len(axes)))]
        return (kind, i, axis) if kind != "logsumexp" else (kind, i, axis, bool(rng.random() < .5))
    if kind == "xent":
        if gen.distinct and s[-1] == 1:
            return None
        lab = gen.add(("labels", s[:-1], s[-1]))
        return ("xent", i, lab)
    if kind == "mse":
        return ("mse", i, gen.partner(s, i))
    return ("linear", i, int(rng.integers(1, gen.max_dim + 1)))


def program(rng: np.random.Generator, max_ops: int = 8, max_dim: int = 5,
            distinct: bool = False) -> list:
    """A random program of 1..max_ops operations over one or two starting leaves.
    distinct=True (for special values): no binary op reads one value twice, and softmax,
    log-softmax, logsumexp and cross-entropy never run over an axis of size 1. SymPy
    builds x0 - x0 as 0 and Max(x0, x0) as x0 (and x - max(x) is x0 - x0 when the max is
    over one element), exact over the reals but not at inf or NaN (inf - inf is NaN in
    torch); graphc's expressions are SymPy's, so these stay. See SPECIAL_UNARY and
    logsumexp in _draw_op for the other ops left out."""
    gen = _Gen(rng, max_dim, distinct)
    for _ in range(int(rng.integers(1, 3))):
        gen.leaf(gen.dims(1, 3))
    kinds, w = list(KINDS), np.array(list(KINDS.values()), dtype=float)
    for _ in range(int(rng.integers(1, max_ops + 1))):
        rec = None
        while rec is None:
            rec = _draw_op(gen, kinds[rng.choice(len(kinds), p=w / w.sum())])
        gen.add(rec)
    return gen.prog


# +-1e30 stands for "huge": one sign per program, since 1e30 + x - 1e30 in a sum or a mean
# is 0 or x by summation order (an ill-conditioned sum, not a bug either way)
SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e30])
MODES = ("normal", "grid", "special")
# the huge value's size per dtype: one that swallows a small summand (1e8 + log 2 == 1e8 in
# float32) and whose products with a few others stay finite. In float32, 1e30 * 1e30 is inf:
# where an intermediate overflows then depends on the order of the products (graphc's fused
# derivative 2*g*x/(x*x + 1) against torch's chain rule), inf or NaN either way
HUGE = {"float64": 1e30, "float32": 1e8}


def _draw_values(rng: np.random.Generator, shape: tuple, mode: str, huge: float = 1e30):
    if mode == "grid":  # small integers: exact zeros, ties in max/min, relu's kink
        return rng.integers(-3, 4, shape).astype(float)
    v = rng.normal(size=shape)
    if mode == "special":
        hit = rng.random(shape) < 0.4
        v = np.where(hit, SPECIAL[rng.integers(len(SPECIAL), size=shape)], v)
        v = np.where(v == 1e30, huge, v)
    return np.asarray(v, dtype=float)


def leaf_values(prog: list, rng: np.random.Generator, mode: str = "normal",
                huge: float = HUGE["float64"]) -> dict:
    """Feeds and parameter values by name (float64; the caller rounds for float32):
    v<k> for leaves, v<k>_W / v<k>_b for a linear's params, w<k> for the loss weights.
    `huge`: the size of the special mode's huge value (HUGE of the dtype)."""
    if mode not in MODES:
        raise ValueError(f"input mode {mode!r} is not one of {MODES}")
    shapes = shapes_of(prog)
    values: dict = {}
    huge = huge if mode != "special" or rng.random() < 0.5 else -huge
    for k, rec in enumerate(prog):
        if rec[0] == "leaf":
            values[f"v{k}"] = _draw_values(rng, rec[2], mode, huge)
        elif rec[0] == "labels":
            values[f"v{k}"] = rng.integers(0, rec[2], rec[1]).astype(np.int64)
        elif rec[0] == "linear":
            fan_in = shapes[rec[1]][-1]
            values[f"v{k}_W"] = _draw_values(rng, (fan_in, rec[2]), mode, huge)
            values[f"v{k}_b"] = _draw_values(rng, (rec[2],), mode, huge)
        if rec[0] not in ("leaf", "labels"):
            # the loss is sum_k sum(w<k> * v<k>): a random seed gradient for every output
            values[f"w{k}"] = rng.normal(size=shapes[k])
    return values


def _base(prog: list, shapes: list, k: int) -> int:
    """The record whose values k holds unchanged (through a reshape or broadcast to the
    same shape, an identity transpose): simplify removes those, so x - x appears."""
    while prog[k][0] in ("reshape", "broadcast", "transpose") and \
            shapes[prog[k][1]] == shapes[k] and \
            (prog[k][0] != "transpose" or list(prog[k][2]) == sorted(prog[k][2])):
        k = prog[k][1]
    return k


def special_ok(prog: list) -> bool:
    """Whether program(distinct=True) could draw prog (the shrinker keeps to these). A max
    or min over size-1 axes only is the identity to simplify, but torch's amax gradient at
    NaN is 0/0 (no element equals NaN): left out with the other cases of program()."""
    shapes = shapes_of(prog)
    for rec in prog:
        kind = rec[0]
        if kind in ("binary", "mse") and len({_base(prog, shapes, k) for k in args_of(rec)}) < 2 \
                or \
                kind == "unary" and rec[1] not in SPECIAL_UNARY or kind == "logsumexp":
            return False
        if kind in ("softmax", "log_softmax") and shapes[rec[1]][rec[2]] == 1 or \
                kind == "xent" and shapes[rec[1]][-1] == 1:
            return False
        if kind == "reduce" and rec[1] in ("max", "min"):
            s = shapes[rec[2]]
            if all(s[a] == 1 for a in (range(len(s)) if rec[3] is None else rec[3])):
                return False
    return True
