"""Property test: random graphs from the op grammar, compiled by graphc, against the same
program run in PyTorch. A program is a list of records; one interpreter per library turns
the records into builder calls (graphc) or torch calls, so the reference is independent of
graphc's IR, passes and code generator.

Tolerances (float64): rtol 1e-8 and atol 1e-10 * (1 + max |reference|) per array, since
summation order (matmul, reductions) and fused/simplified expressions differ.
"""
from __future__ import annotations

import operator
import warnings

import numpy as np
import torch
from hypothesis import given, note, settings, strategies as st

import graphc as gc
from graphc.passes.autodiff import GradientWarning
from tests.torch_reference import pair

RTOL, ATOL_SCALE = 1e-8, 1e-10

# name -> (graphc, torch) from tests/torch_reference.py; log and sqrt get arguments kept in
# their domain
PARAMS = {"leaky_relu": (0.1,), "elu": (0.7,)}
UNARY = {
    **{op: pair(op, *PARAMS.get(op, ())) for op in gc.ELEMENTWISE if op not in ("log", "sqrt")},
    "log_of_x2+1": (lambda x: gc.log(gc.square(x) + 1.0), lambda t: torch.log(t * t + 1.0)),
    "sqrt_of_x2+0.5": (lambda x: gc.sqrt(x * x + 0.5), lambda t: torch.sqrt(t * t + 0.5)),
    "scale": (lambda x: 0.5 - 1.5 * x, lambda t: 0.5 - 1.5 * t),
}
BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul}
TORCH_REDUCE = {"sum": torch.sum, "max": torch.amax, "min": torch.amin, "mean": torch.mean}
KINDS = ["unary", "unary", "binary", "binary", "reduce", "matmul", "transpose", "reshape"]


# ---- the grammar --------------------------------------------------------------------------

def _broadcastable(a: tuple, b: tuple) -> bool:
    try:
        return len(np.broadcast_shapes(a, b)) <= 4
    except ValueError:
        return False


@st.composite
def programs(draw):
    """Records: ('leaf', kind, shape) | ('unary', op, i) | ('binary', op, i, j) |
    ('reduce', fn, i, axes, keepdims) | ('matmul', i, j) | ('transpose', i, perm) |
    ('reshape', i, shape). Arguments index earlier records, so nodes fan out freely."""
    dim = st.integers(1, 4)
    prog, shapes = [], []

    def leaf(shape):
        prog.append(("leaf", draw(st.sampled_from(["input", "param"])), tuple(shape)))
        shapes.append(tuple(shape))
        return len(shapes) - 1

    for _ in range(draw(st.integers(1, 2))):
        leaf(draw(st.lists(dim, min_size=1, max_size=3)))
    for _ in range(draw(st.integers(1, 7))):
        kind = draw(st.sampled_from(KINDS))
        rank_ok = {"reduce": 1, "matmul": 2, "transpose": 2}.get(kind, 0)
        eligible = [k for k, s in enumerate(shapes) if rank_ok <= len(s) <= 3]
        if not eligible:
            kind, eligible = "unary", list(range(len(shapes)))
        i = draw(st.sampled_from(eligible[::-1]))  # most recent first: long chains shrink well
        s = shapes[i]
        if kind == "unary":
            prog.append(("unary", draw(st.sampled_from(sorted(UNARY))), i))
            out = s
        elif kind == "binary":
            partners = [k for k, t in enumerate(shapes) if _broadcastable(s, t)]
            if draw(st.booleans()):
                j = draw(st.sampled_from(partners))  # may be i itself: x * x
            else:  # a new leaf whose shape broadcasts against s
                keep = draw(st.integers(0, len(s)))
                j = leaf([d if draw(st.booleans()) else 1 for d in s[len(s) - keep:]])
            prog.append(("binary", draw(st.sampled_from(sorted(BINARY))), i, j))
            out = np.broadcast_shapes(s, shapes[j])
        elif kind == "reduce":
            axes = draw(st.sets(st.integers(0, len(s) - 1), min_size=1))
            axes = None if draw(st.booleans()) else tuple(sorted(axes))
            keepdims = draw(st.booleans())
            fn = draw(st.sampled_from(sorted(TORCH_REDUCE)))
            prog.append(("reduce", fn, i, axes, keepdims))
            out = tuple(1 if axes is None or k in axes else d for k, d in enumerate(s)
                        if keepdims or not (axes is None or k in axes))
        elif kind == "matmul":
            n = draw(dim)
            batch = s[:-2] if draw(st.booleans()) else ()
            j = leaf(batch + (s[-1], n))
            prog.append(("matmul", i, j))
            out = s[:-2] + (s[-2], n)
        elif kind == "transpose":
            perm = tuple(draw(st.permutations(range(len(s)))))
            prog.append(("transpose", i, perm))
            out = tuple(s[p] for p in perm)
        else:
            size = int(np.prod(s))
            options = [(size,), (1, size), tuple(reversed(s)), s + (1,)]
            options += [(2, size // 2)] if size % 2 == 0 else []
            out = draw(st.sampled_from(options))
            prog.append(("reshape", i, out))
        shapes.append(tuple(int(d) for d in out))
    return prog


# ---- the two interpreters -----------------------------------------------------------------

def run_graphc(prog: list, values: dict):
    """Build the program with the graphc API; returns (graph, nodes)."""
    g = gc.Graph("prop", dtype="float64")
    nodes = []
    for k, rec in enumerate(prog):
        kind, a = rec[0], rec[1:]
        if kind == "leaf":
            name = f"v{k}"
            nodes.append(g.input(name, a[1]) if a[0] == "input" else
                         g.param(name, a[1], init=values[name]))
        elif kind == "unary":
            nodes.append(UNARY[a[0]][0](nodes[a[1]]))
        elif kind == "binary":
            nodes.append(BINARY[a[0]](nodes[a[1]], nodes[a[2]]))
        elif kind == "reduce":
            nodes.append(getattr(gc, a[0])(nodes[a[1]], axis=a[2], keepdims=a[3]))
        elif kind == "matmul":
            nodes.append(gc.matmul(nodes[a[0]], nodes[a[1]]))
        elif kind == "transpose":
            nodes.append(gc.transpose(nodes[a[0]], a[1]))
        else:
            nodes.append(gc.reshape(nodes[a[0]], a[1]))
    return g, nodes


def run_torch(prog: list, leaves: dict) -> torch.Tensor:
    """The same program in PyTorch; returns the last value."""
    ts = []
    for k, rec in enumerate(prog):
        kind, a = rec[0], rec[1:]
        if kind == "leaf":
            ts.append(leaves[f"v{k}"])
        elif kind == "unary":
            ts.append(UNARY[a[0]][1](ts[a[1]]))
        elif kind == "binary":
            ts.append(BINARY[a[0]](ts[a[1]], ts[a[2]]))
        elif kind == "reduce":
            x = ts[a[1]]
            dim = tuple(range(x.dim())) if a[2] is None else a[2]
            ts.append(TORCH_REDUCE[a[0]](x, dim=dim, keepdim=a[3]))
        elif kind == "matmul":
            ts.append(ts[a[0]] @ ts[a[1]])
        elif kind == "transpose":
            ts.append(ts[a[0]].permute(*a[1]))
        else:
            ts.append(ts[a[0]].reshape(a[1]))
    return ts[-1]


def args_of(rec: tuple) -> list:
    """The record indices a record reads."""
    kind = rec[0]
    if kind == "leaf":
        return []
    if kind in ("binary", "matmul"):
        return [rec[-2], rec[-1]]
    return [rec[2]] if kind in ("unary", "reduce") else [rec[1]]


def ancestors(prog: list) -> set:
    """Indices of the records the last one reads, directly or not (itself included)."""
    seen, todo = set(), [len(prog) - 1]
    while todo:
        k = todo.pop()
        if k not in seen:
            seen.add(k)
            todo += args_of(prog[k])
    return seen


# ---- the property -------------------------------------------------------------------------

def close(got, want, what: str):
    want = np.asarray(want)
    atol = ATOL_SCALE * (1.0 + (np.abs(want).max() if want.size else 0.0))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=atol, err_msg=what)


def check_against_torch(prog, seed: int, compile_function) -> None:
    """Run a random program in PyTorch (float64 autograd) and through graphc, compiled by
    `compile_function(graph, outputs)`; the loss and every gradient must agree."""
    rng = np.random.default_rng(seed)
    leaves = [k for k, r in enumerate(prog) if r[0] == "leaf"]
    values = {f"v{k}": rng.normal(size=prog[k][2]) for k in leaves}
    used = [k for k in leaves if k in ancestors(prog)]

    tl = {n: torch.tensor(v, requires_grad=True) for n, v in values.items()}
    t_loss = run_torch(prog, tl).sum()
    if not torch.isfinite(t_loss):
        return  # exp of a large value overflowed: nothing to compare
    t_loss.backward()

    g, nodes = run_graphc(prog, values)
    loss = gc.sum(nodes[-1])
    with warnings.catch_warnings():
        # a leaf that reaches the loss only through ops with zero derivative
        warnings.simplefilter("ignore", GradientWarning)
        grads = gc.grad(loss, [nodes[k] for k in used])
    f = compile_function(g, [loss, *grads])
    # feed only the inputs the compiled code reads (see the xfail in test_autodiff.py)
    got = f(**{n: values[n] for n in f.module.INPUTS})

    close(got[0], t_loss.item(), "loss")
    for k, gv in zip(used, got[1:]):
        want = tl[f"v{k}"].grad
        want = np.zeros(prog[k][2]) if want is None else want.numpy()
        close(gv, want, f"d loss / d v{k}")


@settings(max_examples=40, deadline=None, derandomize=True, print_blob=True)
@given(prog=programs(), seed=st.integers(0, 2**16))
def test_random_graphs_match_torch(prog, seed):
    note(f"program: {prog}")
    check_against_torch(prog, seed, lambda g, outputs: gc.function(g, outputs,
                                                                   backend="numpy"))


def test_ancestors_follow_arguments():
    prog = [("leaf", "input", (2,)), ("leaf", "param", (2,)), ("unary", "tanh", 0),
            ("binary", "mul", 2, 2), ("matmul", 3, 1)]
    assert ancestors(prog) == {0, 1, 2, 3, 4}
    assert ancestors(prog[:4]) == {0, 2, 3}
