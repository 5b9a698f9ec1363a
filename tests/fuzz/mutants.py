"""Planted bugs in code generation and passes, each a context manager that monkeypatches
graphc while it is active, for checking that the fuzzer catches them (tests/test_mutants.py).

A mutant names where it sits, what it breaks, and the configurations that can see it
(a fusion bug only shows with fusion on, a Triton printer bug only on Triton, a C one on
C; a NaN rule only with special inputs, a kink only on the integer grid). The C mutants
change what is read or written, never where beyond a buffer: a stray store would take
the test process down with it."""
from __future__ import annotations

import contextlib
import dataclasses
import re
import sys
from dataclasses import dataclass
from unittest import mock

import numpy as np
import sympy

from graphc import exprs, functions, ops
from graphc.codegen import numpy as numpy_cg, triton as triton_cg, ufuncs
from graphc.codegen.c import kernels as ck, layout as cl, module as c_cg, printer as cp
from graphc.codegen.triton import kernels as tk, reduce as tr
from graphc.passes import autodiff, cse, fuse, memory, simplify

from .check import Config

NUMPY = (Config("numpy", True), Config("numpy", False), Config("numpy", True, inputs="grid"))
FUSED = (Config("numpy", True), Config("numpy", True, inputs="grid"))
TRITON = (Config("triton", True), Config("triton", False))
C_FUSED, C_UNFUSED = (Config("c", True),), (Config("c", False),)
C_SPECIAL = (Config("c", True, inputs="special"),)
C_GRID = (Config("c", True, inputs="grid"),)


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    patch: object          # () -> context manager
    configs: tuple = NUMPY


@contextlib.contextmanager
def _fresh_derivatives(*patches):
    """Apply patches; ops memoizes local derivatives, so the memo is cleared around them."""
    ops._local_derivative.cache_clear()
    with contextlib.ExitStack() as stack:
        for p in patches:
            stack.enter_context(p)
        yield
    ops._local_derivative.cache_clear()


def _rewrite_source(module, old: str, new: str, count: int = 1):
    """Wrap a backend's generate() so its text has `old` replaced by `new`."""
    real = module.generate

    def generate(*a, **kw):
        return real(*a, **kw).replace(old, new, count if count > 0 else -1)
    return mock.patch.object(module, "generate", generate)


def _everywhere_in_c(original, new):
    """Patches of every graphc.codegen.c module's name bound to `original`: its own module's
    and each `from .kernels import loop` copy (the templates live in several files)."""
    mods = [m for n, m in sorted(sys.modules.items()) if n.startswith("graphc.codegen.c.")]
    return _both(*[mock.patch.object(m, k, new) for m in mods
                   for k, v in sorted(vars(m).items()) if v is original])


def _rewrite_c_source(old: str, new: str, count: int = 1, regex: bool = False):
    """Wrap the C backend's generate() so its translation unit (the first of the two texts
    it returns) has `old` replaced by `new`: a regular expression (multiline) where regex."""
    real = c_cg.generate

    def generate(*a, **kw):
        c_source, host = real(*a, **kw)
        if regex:
            return re.sub(old, new, c_source, count=max(count, 0), flags=re.M), host
        return c_source.replace(old, new, count if count > 0 else -1), host
    return mock.patch.object(c_cg, "generate", generate)


# ---- autodiff and op rules ---------------------------------------------------------------

def _vjp_matmul_no_transpose(graph, node, grad, i):
    a, b = graph.args(node)
    if i == 0:  # g @ B, not g @ B^T
        return graph.matmul(grad, b, name=graph.fresh(f"d_{node}_x0"))
    return ops._vjp_matmul(graph, node, grad, i)


def _vjp_permute_forward(graph, node, grad, i):
    """The forward perm where the inverse is needed (equal for swaps, not 3-cycles)."""
    return graph.permute(grad, tuple(graph.attrs(node)["perm"]), name=graph.fresh(f"d_{node}"))


def _vjp_reduce_no_tie_split(graph, node, grad, i):
    """max/min: every tied element gets the whole gradient (no division by the count)."""
    a = graph.attrs(node)
    if a["fn"] == "sum":
        return ops._vjp_reduce(graph, node, grad, i)
    x = graph.args(node)[0]
    kept = tuple(1 if k in a["axes"] else d for k, d in enumerate(graph.attrs(x)["shape"]))
    g = grad if a["keepdims"] else graph.reshape(grad, kept, name=graph.fresh(f"d_{node}_k"))
    out = node if a["keepdims"] else graph.reshape(node, kept, name=graph.fresh(f"{node}_k"))
    x0, x1, x2 = exprs.args(3)
    return graph.map(x0 * sympy.Piecewise((1, sympy.Eq(x1, x2)), (0, True)), [g, x, out],
                     name=graph.fresh(f"d_{node}_x0"))


def _vjp_map_negated(graph, node, grad, i):
    c = ops._vjp_map(graph, node, grad, i)
    a = graph.attrs(node)["expr"]
    if c is None or not a.has(sympy.Mul) or i != 1:
        return c
    return graph.map(-exprs.arg(0), [c], name=graph.fresh(f"d_{node}_neg"))


def _sum_drops_last(graph, node, parts, claimed):
    return _real_sum(graph, node, parts[:-1] if len(parts) > 1 else parts, claimed)


_real_sum = autodiff._sum


def _unbroadcast_lead_only(graph, c, shape):
    cs = graph.attrs(c)["shape"]
    lead = len(cs) - len(shape)
    if not lead:
        return c
    summed = graph.reduce(c, "sum", list(range(lead)), name=graph.fresh(f"{c}_unbcast"))
    if tuple(summed.shape) != tuple(shape):  # the size-1 axes are left broadcast
        summed = graph.reduce(summed, "max", [k for k, d in enumerate(shape) if d == 1],
                              keepdims=True, name=graph.fresh(f"{c}_ub"))
    return summed.name


def _step_tie_one(z, at_zero=0):
    return _real_step(z, 1 if at_zero != 0 else 0)


_real_step = exprs.step


# ---- passes ------------------------------------------------------------------------------

def _permute_of_permute_reversed(ctx, n):
    inner, ia = simplify._arg0(ctx, n)
    if ia["op"] != "permute":
        return False
    composed = tuple(ctx.graph.attrs(n)["perm"][p] for p in ia["perm"])  # q[p], not p[q]
    return simplify._rewrite(ctx, n, "permute", ctx.graph.args(inner), perm=composed)


def _replace_rule(name: str, fn):
    rules = [simplify.Rule(r.op, r.name, fn) if r.name == name else r for r in simplify.RULES]
    return mock.patch.object(simplify, "RULES", rules)


def _substituted_swapped(g, producer, consumer):
    """Fusion substitution with the consumer's own arguments swapped (x0 <-> x1)."""
    expr, new_args = _real_substituted(g, producer, consumer)
    if len(new_args) >= 2:
        x0, x1 = exprs.arg(0), exprs.arg(1)
        expr = expr.xreplace({x0: x1, x1: x0})
    return expr, new_args


_real_substituted = fuse.substituted


def _last_uses_without_views(graph, order, keep):
    """A buffer freed after its last direct reader, ignoring the views that read it."""
    pos = {n: i for i, n in enumerate(order)}
    return {n: len(order) if n in keep else max((pos[u] for u in graph.users(n)),
                                                  default=pos[n]) for n in order}


def _last_uses_one_early(graph, order, keep):
    last = _real_last_uses(graph, order, keep)
    return {n: at - 1 if at < len(order) and graph.users(n) else at for n, at in last.items()}


_real_last_uses = memory._last_uses


def _neutral_zero(fn, dtype):
    return "0.0" if dtype != "int64" else "0"


MUTANTS = [
    # ---- NumPy code generation
    Mutant("ufunc_sin_cos_swapped", "graphc/functions.py: sin's NumPy spelling cos, cos's sin",
           lambda: _respelled({sympy.sin: {"numpy": "cos"}, sympy.cos: {"numpy": "sin"}})),
    Mutant("ufunc_tanh_as_arctan", "graphc/functions.py: tanh's NumPy spelling arctan",
           lambda: _respelled({sympy.tanh: {"numpy": "arctan"}})),
    Mutant("ufunc_le_as_lt", "codegen/ufuncs.py: <= printed as < (relu'(0), hard_tanh bounds)",
           lambda: mock.patch.dict(ufuncs.RELATIONS, {sympy.LessThan: "less"})),
    Mutant("ufunc_eq_as_ge", "codegen/ufuncs.py: == printed as >= (max ties, labels)",
           lambda: mock.patch.dict(ufuncs.RELATIONS, {sympy.Equality: "greater_equal"})),
    Mutant("numpy_max_as_fmax", "codegen/numpy.py: reduce max printed as min",
           lambda: mock.patch.dict(numpy_cg.REDUCE_FN, {"max": "np.minimum.reduce"})),
    Mutant("numpy_subtract_as_add", "codegen/ufuncs.py: a - b printed as a + b",
           lambda: _rewrite_source(numpy_cg, "np.subtract(", "np.add(", 0)),
    Mutant("numpy_sum_by_matmul_wrong_axis", "codegen/numpy.py: a square matrix's sum "
           "by matmul over the other axis", lambda: mock.patch.object(
               numpy_cg, "_sum_by_matmul", _sum_wrong_axis)),
    Mutant("numpy_reduce_keepdims_dropped", "codegen/numpy.py: keepdims=True not printed",
           lambda: _rewrite_source(numpy_cg, ", keepdims=True", "", 0)),
    Mutant("numpy_permute_inverted", "codegen/numpy.py: permute printed with the inverse "
           "perm", lambda: mock.patch.object(numpy_cg, "_node_block", _permute_inverted)),
    Mutant("numpy_sigmoid_sign", "graphc/functions.py: sigmoid's NumPy steps 1/(1+exp(x)), "
           "the minus lost", lambda: _respelled({exprs.sigmoid: {"numpy": (
               ("exp", "x", "out"), ("add", "out", 1.0, "out"), ("divide", 1.0, "out", "out"))}})),
    # ---- autodiff and the VJP rules
    Mutant("vjp_matmul_no_transpose", "graphc/ops.py: dA = g @ B instead of g @ B^T",
           lambda: mock.patch.dict(ops.PRIMITIVES, {"matmul": ops.Primitive(
               "matmul", 2, ops._infer_matmul, _vjp_matmul_no_transpose)})),
    Mutant("vjp_permute_not_inverted", "graphc/ops.py: the permute VJP uses perm, not argsort",
           lambda: mock.patch.dict(ops.PRIMITIVES, {"permute": ops.Primitive(
               "permute", 1, ops._infer_permute, _vjp_permute_forward)})),
    Mutant("vjp_max_tie_rule", "graphc/ops.py: max/min ties each get the whole gradient",
           lambda: mock.patch.dict(ops.PRIMITIVES, {"reduce": ops.Primitive(
               "reduce", 1, ops._infer_reduce, _vjp_reduce_no_tie_split)})),
    Mutant("vjp_map_second_arg_sign", "graphc/ops.py: wrong sign in a product's second VJP",
           lambda: _fresh_derivatives(mock.patch.dict(ops.PRIMITIVES, {"map": ops.Primitive(
               "map", None, ops._infer_map, _vjp_map_negated)}))),
    Mutant("adjoint_drops_a_contribution", "passes/autodiff.py: fan-out sum loses one part",
           lambda: mock.patch.object(autodiff, "_sum", _sum_drops_last)),
    Mutant("unbroadcast_size1_axes", "passes/autodiff.py: size-1 broadcast axes max'd, not "
           "summed", lambda: mock.patch.object(autodiff, "unbroadcast", _unbroadcast_lead_only)),
    Mutant("kink_tie_one", "graphc/exprs.py: maximum/minimum ties give 1 to each side",
           lambda: _fresh_derivatives(mock.patch.object(exprs, "step", _step_tie_one))),
    # ---- passes
    Mutant("cse_ignores_expr", "passes/cse.py: maps over the same args merge whatever they "
           "compute", lambda: mock.patch.object(cse, "IGNORED_ATTRS",
                                                cse.IGNORED_ATTRS | {"expr"})),
    Mutant("cse_ignores_axes", "passes/cse.py: reductions over different axes merge",
           lambda: mock.patch.object(cse, "IGNORED_ATTRS",
                                     cse.IGNORED_ATTRS | {"axes", "shape"})),
    Mutant("simplify_permute_composition", "passes/simplify.py: permute(permute) composed "
           "in the wrong order", lambda: _replace_rule("permute_of_permute",
                                                        _permute_of_permute_reversed)),
    Mutant("fuse_swaps_arguments", "passes/fuse.py: substitution swaps argument symbols",
           lambda: mock.patch.object(fuse, "substituted", _substituted_swapped), FUSED),
    Mutant("memory_ignores_views", "passes/memory.py: a buffer is reused while a view of "
           "it is still read", lambda: mock.patch.object(memory, "_last_uses",
                                                          _last_uses_without_views)),
    Mutant("memory_frees_one_early", "passes/memory.py: a buffer is freed one step early",
           lambda: mock.patch.object(memory, "_last_uses", _last_uses_one_early)),
    # ---- Triton code generation
    Mutant("triton_exp_as_log", "graphc/functions.py: exp's Triton spelling tl.log",
           lambda: _respelled({sympy.exp: {"triton": "tl.log({x})"}}), TRITON),
    Mutant("triton_mask_off_by_one", "codegen/triton/kernels.py: the last element masked off",
           lambda: _rewrite_source(triton_cg, "mask = offsets < n_elements",
                                   "mask = offsets < n_elements - 1", 0), TRITON),
    Mutant("triton_reduce_neutral_zero", "codegen/triton: masked lanes of a max/min read 0",
           lambda: _both(mock.patch.object(tk, "neutral", _neutral_zero),
                         mock.patch.object(tr, "neutral", _neutral_zero)), TRITON),
    # ---- C code generation
    Mutant("c_exp_as_expm1", "graphc/functions.py: exp's C spelling expm1",
           lambda: _respelled({sympy.exp: {"c": "expm1{f}({x})"}}), C_UNFUSED),
    Mutant("c_sigmoid_sign", "graphc/functions.py: sigmoid's C spelling 1/(1+exp(x)), the "
           "minus lost", lambda: _respelled({exprs.sigmoid: {
               "c": "({one} / ({one} + exp{f}({x})))"}}), C_FUSED),
    Mutant("c_le_as_lt", "codegen/c/printer.py: <= printed as < (relu'(0), hard_tanh bounds)",
           lambda: mock.patch.object(cp.CPrinter, "_print_Relational", _c_le_as_lt), C_GRID),
    Mutant("c_max_drops_nan", "codegen/c/printer.py: graphc_max a plain a > b ? a : b (a NaN "
           "first argument lost, in maximum and in max reductions)",
           lambda: _rewrite_c_source("const double m = a > b ? a : b;\n    return a != a ? a : m;",
                                     "return a > b ? a : b;"), C_SPECIAL),
    Mutant("c_reduce_neutral_zero", "codegen/c/kernels.py: max/min reductions start at 0, "
           "not -inf/inf", lambda: mock.patch.dict(ck.NEUTRAL, {("max", "f"): "0",
                                                                ("min", "f"): "0"}), C_FUSED),
    Mutant("c_loop_one_short", "codegen/c/kernels.py: every loop stops one element early",
           lambda: _everywhere_in_c(ck.loop, _c_loop_one_short), C_UNFUSED),
    Mutant("c_broadcast_stride_dropped", "codegen/c/layout.py: broadcast over new leading "
           "axes gives the value's first axis stride 0 too",
           lambda: _everywhere_in_c(cl.broadcast, _c_broadcast_one_axis_too_many), C_FUSED),
    Mutant("c_rows_tile_not_written", "codegen/c/rows.py: a rows kernel's later loops read "
           "a whole-row value's tile that its first loop never stored",
           lambda: _rewrite_c_source(r"^[ \t]*\w+_tile\[\w+\] = \w+;\n", "", 0, regex=True),
           C_FUSED),
]


@contextlib.contextmanager
def _both(*patches):
    with contextlib.ExitStack() as stack:
        for p in patches:
            stack.enter_context(p)
        yield


_real_sum_by_matmul = numpy_cg._sum_by_matmul


def _sum_wrong_axis(m, node, x):
    """The sum over axis 0 and axis 1 exchanged for square matrices (shapes allow it)."""
    rows, cols = m.graph.attrs(m.graph.args(node)[0])["shape"]
    text = _real_sum_by_matmul(m, node, x)
    if rows != cols:
        return text
    a = m.graph.attrs(node)
    flipped = dict(a, axes=(1,) if a["axes"] == (0,) else (0,))
    with mock.patch.dict(m.graph.nx.nodes[node], flipped):
        return _real_sum_by_matmul(m, node, x)


_real_node_block = numpy_cg._node_block


def _permute_inverted(m, node):
    a = m.graph.attrs(node)
    if a["op"] != "permute":
        return _real_node_block(m, node)
    inverse = tuple(int(k) for k in np.argsort(a["perm"]))
    with mock.patch.dict(m.graph.nx.nodes[node], {"perm": inverse}):
        return _real_node_block(m, node)


def _respelled(changes: dict):
    """A patch of graphc/functions.py's table: {function class: {field: new spelling}}."""
    return mock.patch.dict(functions.FUNCTIONS, {
        fn: dataclasses.replace(functions.FUNCTIONS[fn], **fields)
        for fn, fields in changes.items()})


def _c_le_as_lt(self, expr):
    op = "<" if expr.rel_op == "<=" else expr.rel_op
    return f"({self._print(expr.lhs)} {op} {self._print(expr.rhs)})"


def _c_loop_one_short(var: str, extent: str, start: str = "0") -> str:
    return f"for (int64_t {var} = {start}; {var} < {extent} - 1; {var}++)"


def _c_broadcast_one_axis_too_many(strides, shape, target) -> tuple:
    """layout.broadcast with `j < 0` read as `j <= 0` where there are new leading axes:
    the value's own first axis steps by 0 (reads stay inside the value)."""
    lead = len(target) - len(shape)
    first = 1 if lead else 0
    return tuple(sympy.Integer(0) if k - lead < first or shape[k - lead] == 1
                 else strides[k - lead] for k in range(len(target)))
