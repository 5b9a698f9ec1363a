"""The C backend's two texts for one schedule: the translation unit (one C function per
kernel) and the Python host module around it: `allocate(<dims>)` (NumPy buffers and their
addresses), `bind(lib)` (the compiled kernels as ctypes functions) and `run(<inputs>, p,
c, buf)`, which calls the kernels in schedule order, np.matmul for matmuls, and updates
parameters in place (or copies the new value back at the end)."""
from __future__ import annotations

import re

import sympy

from graphc import shapes

from ..common import comment, identifiers, shape_source
from ..schedule import LEAVES, VIEWS, base_of, kernel_counts, kernels_of, plan_storage

# kernels.MIN_PARALLEL_WORK is read when writing: bench_c_threads and the fuzzer patch it
from . import kernels as c_kernels
from .kernels import Elementwise, comment as c_comment
from .layout import storage_strides
from .printer import C_TYPE, PRELUDE
from .reduce import Reduce
from .rows import Rows

WRITERS = {"elementwise": Elementwise, "rows": Rows, "reduce": Reduce}
C_WORDS = ["auto", "break", "case", "char", "const", "continue", "default", "do", "double",
           "else", "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long",
           "register", "restrict", "return", "short", "signed", "sizeof", "static", "struct",
           "switch", "typedef", "union", "unsigned", "void", "volatile", "while", "int64_t",
           "INFINITY", "NAN", "ctypes", "addr", "bind", "lib", "SIGNATURES", "KERNELS",
           "DIMS", "INPUTS", "OUTPUTS", "graphc_threads", "graphc_set_threads",
           "graphc_get_threads", "set_threads", "get_threads", "is_",
           "held", "leaves", "kinds", "kernel", "name", "letters", "arrays", "Path",
           "LIBRARY"]
# names the kernels derive from node names, and loop variables: a node may not take them
DERIVED = re.compile(r"i\d+.*|.*_(ptr|row|col\d+|c\d+|out|acc|addr|copy|block|end|tile)|graphc_.*")

UDRS = """
#include <omp.h>
#include <stdlib.h>

// max and min reductions that keep NaN (as np.maximum.reduce), usable in omp simd loops
#pragma omp declare reduction(nanmax_float : float : omp_out = graphc_maxf(omp_out, omp_in)) \\
    initializer(omp_priv = -INFINITY)
#pragma omp declare reduction(nanmin_float : float : omp_out = graphc_minf(omp_out, omp_in)) \\
    initializer(omp_priv = INFINITY)
#pragma omp declare reduction(nanmax_double : double : omp_out = graphc_max(omp_out, omp_in)) \\
    initializer(omp_priv = -INFINITY)
#pragma omp declare reduction(nanmin_double : double : omp_out = graphc_min(omp_out, omp_in)) \\
    initializer(omp_priv = INFINITY)
#pragma omp declare reduction(intmax_int64 : int64_t : \\
    omp_out = graphc_max_i64(omp_out, omp_in)) initializer(omp_priv = INT64_MIN)
#pragma omp declare reduction(intmin_int64 : int64_t : \\
    omp_out = graphc_min_i64(omp_out, omp_in)) initializer(omp_priv = INT64_MAX)

// threads of every parallel loop in this module: set by graphc (GRAPHC_NUM_THREADS or
// threads=); 0, the default of a module loaded by hand, is OpenMP's own default
static int graphc_threads = 0;
void graphc_set_threads(int n) { graphc_threads = n > 0 ? n : 0; }
int graphc_get_threads(void) { return graphc_threads; }
#define GRAPHC_THREADS (graphc_threads > 0 ? graphc_threads : omp_get_max_threads())
"""


def int_source(expr, dims: dict) -> str:
    """An integer dimension expression (128*N, N + 1) as C or Python source."""
    expr = sympy.sympify(expr)
    if expr.is_Integer:
        return str(int(expr))
    if expr.is_Symbol:
        return dims[expr.name]
    if expr.is_Mul:
        return " * ".join(_group(a, dims) for a in expr.args)
    if expr.is_Add:
        return "(" + " + ".join(int_source(a, dims) for a in expr.args) + ")"
    if expr.is_Pow and expr.exp.is_Integer and expr.exp > 0:
        return " * ".join([_group(expr.base, dims)] * int(expr.exp))
    raise NotImplementedError(f"c backend: no integer C code for dimension {expr}")


def _group(expr, dims: dict) -> str:
    text = int_source(expr, dims)
    return text if text.isidentifier() or text.isdigit() or text.startswith("(") \
        else f"({text})"


class Context:
    """What every kernel of one module reads: the graph, identifiers, storage."""

    def __init__(self, graph, names: dict, dims: dict, storage):
        self.graph, self.names, self.dims, self.storage = graph, names, dims, storage

    def scalar(self, expr) -> str:
        return int_source(expr, self.dims)

    def storage_of(self, node) -> str:
        """The identifier of the storage `node`'s elements are read from."""
        if storage_strides(self.graph, node) is None:
            return self.names[node] + "_copy"   # the host makes it contiguous
        base = base_of(self.graph, node)
        return self.names[self.storage.in_place.get(base, base)]

    def host_of(self, node) -> str:
        """The host expression of that storage's address."""
        return f"{self.storage_of(node)}_addr"


class HostWriter:
    """Prints the translation unit, allocate(), bind() and run() for one schedule."""

    def __init__(self, graph, outputs, updates, plan, title: str):
        self.graph, self.outputs, self.updates = graph, list(outputs), dict(updates)
        self.title = title
        self.order = list(plan.order)
        self.kernels = kernels_of(graph, outputs, updates)
        self.storage = plan_storage(graph, self.kernels, outputs, updates, plan.in_place)
        words = identifiers(C_WORDS)
        self.dim_ids = identifiers(sorted(graph.dims), taken=words.values())
        names = identifiers(self.order, taken={*words.values(), *self.dim_ids.values()})
        taken = {*words.values(), *self.dim_ids.values(), *names.values()}
        self.names = {}
        for n, ident in names.items():
            if DERIVED.fullmatch(ident):
                k = 1
                while f"{ident}_v{k}" in taken:
                    k += 1
                ident = f"{ident}_v{k}"
                taken.add(ident)
            self.names[n] = ident
        for k in self.kernels:
            ident = identifiers([k.name])[k.name]
            while ident in taken:
                ident += "_kernel"
            taken.add(ident)
            k.name = ident
        self.ctx = Context(graph, self.names, self.dim_ids, self.storage)
        self.emitted: set = set()   # views made on the host
        self.copied: set = set()    # views copied for kernels: no strides describe them

    def ident(self, node) -> str:
        return self.names[node]

    def inputs(self) -> list:
        return [n for n in self.order if self.graph.attrs(n)["op"] == "input"]

    def leaves(self) -> list:
        """Params and consts: their addresses are held between calls."""
        return [n for n in self.order if self.graph.attrs(n)["op"] in ("param", "const")]

    def extra(self) -> list:
        """Leaves stored by the host, after the slots: iotas (one ramp each), rand draws."""
        return [n for n in self.order if self.graph.attrs(n)["op"] in ("iota", "rand")]

    def shape(self, shape) -> str:
        return shape_source(shape, self.dim_ids)

    # ---- C -------------------------------------------------------------------------------
    def translation_unit(self) -> tuple:
        """(C source, [(kernel, signature letters, host args)])."""
        parts, calls = [], []
        for k in self.kernels:
            if k.kind == "matmul":
                continue
            if k.kind not in WRITERS:
                raise NotImplementedError(f"c backend: no C template for {k.kind} kernel "
                                          f"{k.name} ({', '.join(k.nodes)})")
            writer = WRITERS[k.kind](self.ctx, k)
            parts.append(writer.write())
            calls.append((k, writer.host_args()))
        head = [f"// graphc: generated C code for {c_comment(self.title or self.graph.name)}.",
                f"// {kernel_counts(self.kernels)}; matmuls run as "
                "np.matmul in the host module, the others are the functions below.",
                "// Regenerate from the graph rather than editing this file.",
                PRELUDE, UDRS, f"#define GRAPHC_PARALLEL_MIN {c_kernels.MIN_PARALLEL_WORK}", ""]
        return "\n".join(head) + "\n" + "\n\n".join(parts), calls

    # ---- host ----------------------------------------------------------------------------
    def allocate(self) -> list:
        lines = [f"def allocate({', '.join(self.dim_ids.values())}):",
                 '    """Every buffer of `run` for one set of dimensions, and their addresses '
                 '(last)."""',
                 "    arrays = ["]
        for k, (shape, dtype) in enumerate(self.storage.slots):
            users = comment(", ".join(self.storage.sharing(k)), 80)
            lines.append(f"        np.empty({self.shape(shape)}, np.{dtype}),  # {k}: {users}")
        base = len(self.storage.slots)
        for j, n in enumerate(self.extra()):
            a = self.graph.attrs(n)
            if a["op"] == "iota":
                size = int_source(a["shape"][a["axis"]], self.dim_ids)
                make = f"np.arange({size}, dtype=np.{a['dtype']})"
            else:
                make = f"np.empty({self.shape(a['shape'])}, np.{a['dtype']})"
            lines.append(f"        {make},  # {base + j}: {comment(n)}")
        dims = ", ".join(self.dim_ids.values()) + ("," if len(self.dim_ids) == 1 else "")
        return lines + ["    ]",
                        "    # then: params' and consts' addresses as last seen, the buffers' "
                        "addresses, the dims",
                        f"    return arrays + [[], [a.ctypes.data for a in arrays], ({dims})]"]

    def bindings(self) -> list:
        g, lines = self.graph, []
        if self.dim_ids:   # the dims the buffers were made for (bound by the runtime)
            dims = ", ".join(self.dim_ids.values())
            lines.append(f"{dims}{',' if len(self.dim_ids) == 1 else ''} = buf[-1]")
        c_read = {self.ctx.storage_of(x) for k in self.kernels if k.kind != "matmul"
                  for x in k.inputs}
        for n in self.inputs():
            me = self.ident(n)
            if me in c_read:   # kernels index it as row-major
                lines += [f"{me} = np.asarray({me}, order=\"C\")", f"{me}_addr = {me}.ctypes.data"]
        leaves = self.leaves()
        for n in leaves:
            op = g.attrs(n)["op"]
            lines.append(f"{self.ident(n)} = {'p' if op == 'param' else 'c'}[{n!r}]")
        if leaves:
            # params and consts are the same arrays call after call (updated in place):
            # their addresses are taken again only when one is another array than last time
            names = ", ".join(self.ident(n) for n in leaves) + ("," if len(leaves) == 1 else "")
            lines += ["held = buf[-3]", f"leaves = ({names})",
                      "if not held or not all(map(is_, leaves, held[0])):",
                      "    held[:] = [leaves, [a.ctypes.data for a in leaves]]",
                      f"{', '.join(self.ident(n) + '_addr' for n in leaves)}"
                      f"{',' if len(leaves) == 1 else ''} = held[1]"]
        lines.append("addr = buf[-2]")
        base = len(self.storage.slots)
        for j, n in enumerate(self.extra()):
            lines += [f"{self.ident(n)} = buf[{base + j}]",
                      f"{self.ident(n)}_addr = addr[{base + j}]"]
        for k in self.kernels:
            for n in k.outputs:
                me = self.ident(n)
                if n in self.storage.in_place:
                    param = self.ident(self.storage.in_place[n])
                    lines.append(f"{me} = {param}  # new {comment(self.storage.in_place[n])}, "
                                 "written in place")
                else:
                    slot = self.storage.slot_of[n]
                    lines += [f"{me} = buf[{slot}]", f"{me}_addr = addr[{slot}]"]
        return lines

    def view(self, node) -> list:
        """The NumPy view of a layout node (and of the views it reads), once, before the
        host's first use of it (a matmul operand, a copy, a returned value)."""
        a = self.graph.attrs(node)
        if node in self.emitted:
            return []
        self.emitted.add(node)
        if a["op"] == "iota":
            ramp = [1] * len(a["shape"])
            ramp[a["axis"]] = a["shape"][a["axis"]]
            me = self.ident(node)
            return [f"{me} = np.broadcast_to({me}.reshape({self.shape(ramp)}), "
                    f"{self.shape(a['shape'])})  # {comment(node)}"]
        if a["op"] not in VIEWS:
            return []
        x = self.graph.args(node)[0]
        lines = self.view(x)
        arg, me = self.ident(x), self.ident(node)
        if a["op"] == "permute":
            call = f"{arg}.transpose({tuple(a['perm'])!r})"
        elif a["op"] == "reshape":
            call = f"{arg}.reshape({self.shape(a['shape'])})"
        else:
            call = f"np.broadcast_to({arg}, {self.shape(a['shape'])})"
        return lines + [f"{me} = {call}  # {comment(node)}"]

    def draw(self, node) -> list:
        """A rand node's numbers: NumPy's Philox keyed by (seed, step), the same draws as
        the NumPy backend's."""
        a = self.graph.attrs(node)
        step = self.ident(self.graph.args(node)[0])
        return [f"# {comment(node)}: uniform numbers for this step",
                f"np.random.Generator(np.random.Philox(key=({a['seed']} << 32) + int({step}))"
                f").random(out={self.ident(node)}, dtype=np.{a['dtype']})"]

    def body(self, calls) -> list:
        lines = []
        for n in self.extra():
            if self.graph.attrs(n)["op"] == "rand":
                lines += self.draw(n)
        by_kernel = {k.name: args for k, args in calls}
        for k in self.kernels:
            if k.kind == "matmul":
                n, = k.nodes
                a, b = self.graph.args(n)
                lines += self.view(a) + self.view(b)
                lines += [f"# {comment(n)} = {comment(a)} @ {comment(b)}  ({k.name}, a library "
                          "matmul)",
                          f"np.matmul({self.ident(a)}, {self.ident(b)}, out={self.ident(n)})"]
                continue
            for x in k.inputs:
                if storage_strides(self.graph, x) is None and x not in self.copied:
                    # the values are final once their kernel ran; each call copies them anew
                    self.copied.add(x)
                    lines += self.view(x) + [f"{self.ident(x)}_copy = np.ascontiguousarray("
                                             f"{self.ident(x)})  # no strides describe it",
                                             f"{self.ident(x)}_copy_addr = "
                                             f"{self.ident(x)}_copy.ctypes.data"]
            members = comment(", ".join(k.nodes), 80)
            args = [h for _, h in by_kernel[k.name]]
            lines += [f"# {k.name} ({k.kind}): {members}"] + \
                wrap(f"{k.name}(", args, ")")
        for upd, param in self.storage.copy_back.items():
            lines += self.view(upd)
            lines.append(f"np.copyto({self.ident(param)}, {self.ident(upd)})  # update "
                         f"{comment(param)}")
        for o in self.outputs:
            lines += self.view(o)
        ret = ", ".join(self.ident(o) for o in self.outputs)
        return lines + [f"return ({ret}{',' if len(self.outputs) == 1 else ''})"]

    def module(self, calls, run_lines: list, library_name: str) -> str:
        """The host module's text: `run_lines` (bindings and body, printed once) in run()."""
        g = self.graph

        def listing(nodes):
            return ", ".join(f"{_doc(n)} {shapes.fmt(g.attrs(n)['shape'])} "
                             f"{g.attrs(n)['dtype']}" for n in nodes) or "none"
        lines = [f'"""graphc: generated C host code for {_doc(self.title or g.name)}.', "",
                 f"Inputs:  {listing(self.inputs())}", f"Outputs: {listing(self.outputs)}"]
        if self.updates:
            copied = set(self.storage.copy_back.values())
            lines.append("Updates: " + ", ".join(
                _doc(p) + (" (copied back last)" if p in copied else " (in place)")
                for p in self.updates))
        lines += [f"Kernels: {len(self.kernels)}, called in this order by run(); their C "
                  f"source is {library_name} beside this file.",
                  "Regenerate from the graph rather than editing this file.", '"""',
                  "import ctypes", *["from operator import is_"] * bool(self.leaves()),
                  "from pathlib import Path", "", "import numpy as np", "",
                  f"DIMS = {tuple(self.dim_ids)!r}", f"INPUTS = {tuple(self.inputs())!r}",
                  f"OUTPUTS = {tuple(self.outputs)!r}",
                  "KERNELS = (  # name, kind, member nodes: in call order"]
        lines += [f"    {(k.name, k.kind, tuple(k.nodes))!r}," for k in self.kernels]
        lines += [")", "SIGNATURES = {  # kernel -> its parameters: p pointer, i int64"]
        lines += [f"    {k.name!r}: {''.join(t for t, _ in args)!r}," for k, args in calls]
        lines += ["}", f"LIBRARY = {library_name[:-2] + '.so'!r}  # beside this file", "", "",
                  "def bind(lib):",
                  '    """The compiled kernels of `lib` (a ctypes.CDLL) as this module\'s '
                  'functions."""',
                  "    kinds = {'p': ctypes.c_void_p, 'i': ctypes.c_int64}",
                  "    for name, letters in SIGNATURES.items():",
                  "        kernel = getattr(lib, name)",
                  "        kernel.argtypes = [kinds[t] for t in letters]",
                  "        kernel.restype = None",
                  "        globals()[name] = kernel",
                  "    lib.graphc_set_threads.argtypes = [ctypes.c_int]",
                  "    globals()['set_threads'] = lib.graphc_set_threads",
                  "    globals()['get_threads'] = lib.graphc_get_threads", "", ""]
        lines += self.allocate() + ["", ""]
        args = [self.ident(n) for n in self.inputs()] + ["p", "c", "buf"]
        lines += [f"def run({', '.join(args)}):",
                  '    """One evaluation: NumPy arrays in, NumPy arrays (buffers of `buf`) '
                  'out."""'] + ["    " + line if line else "" for line in run_lines]
        lines += ["", "", "bind(ctypes.CDLL(str(Path(__file__).resolve().with_name(LIBRARY))))"]
        return "\n".join(lines) + "\n"


def wrap(head: str, args: list, tail: str, width: int = 96) -> list:
    """A call on one line if it fits, else continuation lines."""
    one = head + ", ".join(args) + tail
    if len(one) <= width:
        return [one]
    lines, current = [head], "    "
    for a in args:
        piece = a + ", "
        if len(current) + len(piece) > width and current.strip():
            lines.append(current.rstrip())
            current = "    "
        current += piece
    lines.append(current.rstrip().rstrip(",") + tail)
    return lines


def _doc(text) -> str:
    return comment(text).replace('"', '\\"')


def check_ops(graph, outputs) -> None:
    """Ops the C backend has no code for, named with their node."""
    for n in graph.topo():
        op = graph.attrs(n)["op"]
        if op not in VIEWS + LEAVES + ("map", "reduce", "matmul"):
            raise NotImplementedError(f"c backend: no code for op {op!r} (node {n!r})")
        if graph.attrs(n)["dtype"] not in C_TYPE:
            raise NotImplementedError(f"c backend: no C type for {graph.attrs(n)['dtype']} "
                                      f"(node {n!r})")


def generate(graph, outputs: list, updates: dict, plan, title: str = "") -> tuple:
    """(C source, host(c_file_name) -> host module source) computing `outputs` and
    applying `updates`; the host module names the C file, known once it is stored."""
    check_ops(graph, outputs)
    w = HostWriter(graph, outputs, updates, plan, title)
    c_source, calls = w.translation_unit()
    # run()'s lines once (they spend the writer's views), so host() may be called again
    run_lines = w.bindings() + w.body(calls)
    return c_source, lambda c_file: w.module(calls, run_lines, c_file)
