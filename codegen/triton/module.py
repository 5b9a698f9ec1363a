"""The generated module around the kernels: header, `allocate(<dims>)` (torch buffers on
DEVICE), and `run(<inputs>, p, c, buf)`, which launches the kernels in schedule order,
calls torch.matmul for a lone matmul (a generated Triton matmul when its epilogue joined
its kernel), makes views with torch, and updates parameters in place (or copies the new
value back at the end when in place is not safe)."""
from __future__ import annotations

import re

import sympy

from graphc import shapes, triton_host

from ..common import comment, identifiers, scalar_source, shape_source
from ..schedule import LEAVES, VIEWS, base_of, kernel_counts, kernels_of, plan_storage
from .addressing import Context
from .kernels import Elementwise, Launch, Rows
from .matmul import Matmul
from .reduce import Reduce

TORCH_DTYPE = {"float32": "torch.float32", "float64": "torch.float64", "int64": "torch.int64"}
# names the kernels and run() use themselves: a node may not take them
KERNEL_WORDS = ["pid", "offsets", "mask", "row", "cols", "k", "m", "k_mask", "m_mask",
                "start", "n_elements", "n_cols", "n_kept", "n_reduced", "BLOCK", "BLOCK_C",
                "BLOCK_K", "BLOCK_M", "DEVICE", "DIMS", "INPUTS", "OUTPUTS", "KERNELS",
                "libdevice", "maximum_nan", "minimum_nan",
                # the matmul template's
                "rm", "rn", "kk", "n_mask", "acc", "n_tiles_m", "n_tiles_n", "first_m",
                "group_rows", "tile_m", "tile_n", "n_rows", "n_inner", "BLOCK_N", "GROUP_M",
                "a_tile", "b_tile",
                # the split reduce template's
                "split", "stop", "n_splits", "chunk",
                # the host helpers a module imports
                *triton_host.HELPERS]
# names kernels derive from node names
DERIVED = re.compile(r"idx\d+|.*_(ptr|stride\d+|vec|row|out|part|finish|c\d+)")
WRITERS = {"elementwise": Elementwise, "rows": Rows, "reduce": Reduce, "matmul": Matmul}

# device-side helpers, defined in a module only where its kernels call them
JIT_HELPERS = {
    "maximum_nan": '''@triton.jit
def maximum_nan(a, b):
    """max that keeps NaN, as torch.amax (tl.maximum's default drops it)."""
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)
''',
    "minimum_nan": '''@triton.jit
def minimum_nan(a, b):
    """min that keeps NaN, as torch.amin."""
    return tl.minimum(a, b, propagate_nan=tl.PropagateNan.ALL)
''',
}


def names_for(dims, nodes, kernel_names) -> tuple:
    """Identifiers for dims and nodes (two maps: a node may share a dimension's name),
    clear of the words kernels use and of the names kernels derive (x_ptr, x_stride0,
    idx1); then kernel names, clear of all of those."""
    words = identifiers(KERNEL_WORDS)
    dim_ids = identifiers(dims, taken=words.values())
    names = identifiers(nodes, taken={*words.values(), *dim_ids.values()})
    taken = {*words.values(), *dim_ids.values(), *names.values()}

    def fresh(ident: str, suffix: str) -> str:
        """ident + suffix (+ a count) that nothing else is called."""
        k, candidate = 1, ident + suffix
        while candidate in taken:
            k, candidate = k + 1, f"{ident}{suffix}{k + 1}"
        taken.add(candidate)
        return candidate
    dim_ids = {d: fresh(i, "_v") if DERIVED.fullmatch(i) else i for d, i in dim_ids.items()}
    out = {n: fresh(names[n], "_v") if DERIVED.fullmatch(names[n]) else names[n]
           for n in nodes}
    kernels = {}
    for k in kernel_names:
        ident = identifiers([k])[k]
        if ident in taken:
            ident = fresh(ident, "_kernel")
        taken.add(ident)
        kernels[k] = ident
    return dim_ids, out, kernels


class HostWriter:
    """Prints allocate() and run() for one schedule."""

    def __init__(self, graph, outputs, updates, plan, interpret: bool,
                 matmul_precision: str = "ieee"):
        self.graph, self.outputs, self.updates = graph, list(outputs), dict(updates)
        order = list(plan.order) if plan is not None else graph.topo()
        self.order = order
        self.kernels = kernels_of(graph, outputs, updates)
        hint = plan.in_place if plan is not None else None
        self.storage = plan_storage(graph, self.kernels, outputs, updates, hint)
        self.dims = sorted(graph.dims)
        dim_ids, self.names, kernel_names = names_for(self.dims, order,
                                                      [k.name for k in self.kernels])
        for k in self.kernels:
            k.name = kernel_names[k.name]
        self.ctx = Context(graph, self.names, dim_ids, libdevice=not interpret,
                           matmul_precision=matmul_precision,
                           in_place=frozenset(self.storage.in_place))
        self.interpret = interpret
        self.emitted: set = set()
        self.scratch: list = []   # (name, shape source, dtype) of kernels' scratch buffers

    def ident(self, node) -> str:
        return self.names[node]

    def inputs(self) -> list:
        return [n for n in self.order if self.graph.attrs(n)["op"] == "input"]

    def iotas(self) -> list:
        """Iotas the host reads (kernels compute theirs from their indices): read by a
        view, a matmul, or returned."""
        g, out = self.graph, []
        for n in self.order:
            if g.attrs(n)["op"] == "iota" and (n in self.outputs or any(
                    g.attrs(u)["op"] not in ("map", "reduce") for u in g.users(n))):
                out.append(n)
        return out

    def shape(self, shape) -> str:
        return shape_source(shape, self.ctx.dims)

    # ---- allocate ----------------------------------------------------------------------
    def allocate(self) -> list:
        """allocate(<dims>): torch.empty per slot, and the iotas the host reads."""
        dims = ", ".join(self.ctx.dims.values())
        lines = [f"def allocate({dims}):",
                 '    """Every buffer of `run` for one set of dimensions (made once, reused)."""',
                 "    return ["]
        for k, (shape, dtype) in enumerate(self.storage.slots):
            users = comment(", ".join(self.storage.sharing(k)), 80)
            lines.append(f"        torch.empty({self.shape(shape)}, dtype={TORCH_DTYPE[dtype]}, "
                         f"device=DEVICE),  # {k}: {users}")
        for j, n in enumerate(self.iotas()):
            a = self.graph.attrs(n)
            ramp = [1] * len(a["shape"])
            ramp[a["axis"]] = a["shape"][a["axis"]]
            size = scalar_source(a["shape"][a["axis"]], self.ctx.dims)
            lines.append(f"        torch.arange({size}, dtype={TORCH_DTYPE[a['dtype']]}, "
                         f"device=DEVICE).reshape({self.shape(ramp)}).expand("
                         f"{self.shape(a['shape'])}),  # {len(self.storage.slots) + j}: "
                         f"{comment(n)}")
        base = len(self.storage.slots) + len(self.iotas())
        for j, (name, shape, dtype) in enumerate(self.scratch):
            lines.append(f"        torch.empty({shape}, dtype={TORCH_DTYPE[dtype]}, "
                         f"device=DEVICE),  # {base + j}: {name}, scratch")
        return lines + ["    ]"]

    # ---- run -----------------------------------------------------------------------------
    def bindings(self) -> list:
        """Locals for dims, params, consts, iotas and buffers: statements read with node
        names."""
        g, lines, bound = self.graph, [], set()
        for n in self.inputs():
            for axis, d in enumerate(g.attrs(n)["shape"]):
                if isinstance(d, sympy.Symbol) and d.name not in bound:
                    lines.append(f"{self.ctx.dims[d.name]} = {self.ident(n)}.shape[{axis}]")
                    bound.add(d.name)
        for n in self.order:
            op = g.attrs(n)["op"]
            if op in ("param", "const"):
                lines.append(f"{self.ident(n)} = {'p' if op == 'param' else 'c'}[{n!r}]")
        base = len(self.storage.slots)
        lines += [f"{self.ident(n)} = buf[{base + j}]" for j, n in enumerate(self.iotas())]
        base += len(self.iotas())
        lines += [f"{name} = buf[{base + j}]" for j, (name, _, _) in enumerate(self.scratch)]
        for k in self.kernels:
            for n in k.outputs:
                if n in self.storage.in_place:
                    param = self.storage.in_place[n]
                    lines.append(f"{self.ident(n)} = {self.ident(param)}  # new "
                                 f"{comment(param)}, written in place")
                else:
                    lines.append(f"{self.ident(n)} = buf[{self.storage.slot_of[n]}]")
        return lines

    def view(self, node) -> list:
        """The torch view of a layout node (and of the views it reads), once, just
        before its first reader: a reshape of a non-contiguous view copies its data."""
        a = self.graph.attrs(node)
        if a["op"] not in VIEWS or node in self.emitted:
            return []
        self.emitted.add(node)
        x = self.graph.args(node)[0]
        lines = self.view(x)
        arg, me = self.ident(x), self.ident(node)
        if a["op"] == "permute":
            call = f"{arg}.permute({tuple(a['perm'])!r})"
        else:
            method = "reshape" if a["op"] == "reshape" else "expand"
            call = f"{arg}.{method}({self.shape(a['shape'])})"
        return lines + [f"{me} = {call}  # {comment(node)}"]

    def launch(self, kernel, launch: Launch) -> list:
        """`kernel[grid](args, CONSTEXPRS)` with a comment naming its members (and, for a
        split reduction, the host lines around it and its finish launch)."""
        members = comment(", ".join(kernel.nodes), 80)
        lines = [f"# {kernel.name} ({kernel.kind}): {members}"]
        lines += launch.prelude
        self.scratch += launch.scratch
        lines += self.call(launch)
        if launch.then is not None:
            lines += [f"if {launch.then_if}:"] + ["    " + x for x in self.call(launch.then)]
        return lines

    @staticmethod
    def call(launch: Launch) -> list:
        args = launch.args + [f"{k}={v}" for k, v in launch.constexprs.items()]
        return wrap(f"{launch.name}[{launch.grid}](", args, ")")

    def matmul(self, kernel) -> list:
        """A matmul kernel is torch.matmul (cuBLAS on a GPU) into its buffer."""
        n, = kernel.nodes
        a, b = (self.ident(x) for x in self.graph.args(n))
        return [f"# {kernel.name} (matmul): {comment(n)} = {a} @ {b}",
                f"torch.matmul({a}, {b}, out={self.ident(n)})"]

    def body(self) -> tuple:
        """(kernel sources, run() statements)."""
        sources, lines = [], []
        for k in self.kernels:
            for x in k.inputs:
                if base_of(self.graph, x) not in k.nodes:  # else an alias held in registers
                    lines += self.view(x)
            if k.kind == "matmul" and len(k.nodes) == 1:   # no epilogue: the library's
                lines += self.matmul(k)
                continue
            source, launch = WRITERS[k.kind](self.ctx, k).write()
            sources.append(source)
            lines += self.launch(k, launch)
        for upd, param in self.storage.copy_back.items():
            lines += self.view(upd)
            lines.append(f"{self.ident(param)}.copy_({self.ident(upd)})  # update "
                         f"{comment(param)}")
        for o in self.outputs:
            lines += self.view(o)
        ret = ", ".join(self.ident(o) for o in self.outputs)
        lines.append(f"return ({ret}{',' if len(self.outputs) == 1 else ''})")
        return sources, lines

    def run(self, lines) -> list:
        """run(<inputs>, p, c, buf): bindings, then the statements."""
        args = [self.ident(n) for n in self.inputs()] + ["p", "c", "buf"]
        return [f"def run({', '.join(args)}):",
                '    """One evaluation: torch tensors in (contiguous, on DEVICE), torch tensors '
                'out."""'] + ["    " + line if line else "" for line in self.bindings() + lines]


def wrap(head: str, args: list, tail: str, width: int = 96) -> list:
    """A call on one line if it fits, else one continuation line per group of arguments."""
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


def header(w: HostWriter, title: str) -> list:
    """Module docstring, imports, DEVICE, DIMS, INPUTS, OUTPUTS, KERNELS."""
    g = w.graph

    def listing(nodes):
        return ", ".join(f"{_doc(n)} {shapes.fmt(g.attrs(n)['shape'])} {g.attrs(n)['dtype']}"
                         for n in nodes) or "none"
    generated = any(k.kind == "matmul" and len(k.nodes) > 1 for k in w.kernels)
    matmuls = (f"matmuls with epilogues generated (tl.dot, {w.ctx.matmul_precision}), "
               "plain ones cuBLAS through torch" if generated else "cuBLAS matmuls through torch")
    target = ("the Triton interpreter (CPU tensors; for testing only)" if w.interpret
              else f"CUDA (compiled Triton kernels, {matmuls})")
    lines = [f'"""graphc: generated Triton code for {_doc(title or g.name)}.',
             "",
             f"Inputs:  {listing(w.inputs())}",
             f"Outputs: {listing(w.outputs)}"]
    if w.updates:
        copied = set(w.storage.copy_back.values())
        lines.append("Updates: " + ", ".join(
            _doc(p) + (" (copied back last)" if p in copied else " (in place)")
            for p in w.updates))
    lines += [f"{kernel_counts(w.kernels)}, launched in this order by run().",
              f"Target:  {target}.",
              "Regenerate from the graph rather than editing this file.", '"""',
              "import torch", "import triton", "import triton.language as tl"]
    if w.ctx.libdevice and "libdevice" in w.ctx.helpers:
        lines.append("from triton.language.extra import libdevice")
    if w.ctx.host_helpers:
        lines += ["", f"from graphc.triton_host import {', '.join(sorted(w.ctx.host_helpers))}"]
    lines += ["", f"DEVICE = {'cpu' if w.interpret else 'cuda'!r}",
              f"DIMS = {tuple(w.ctx.dims)!r}",
              f"INPUTS = {tuple(w.inputs())!r}",
              f"OUTPUTS = {tuple(w.outputs)!r}",
              "KERNELS = (  # name, kind, member nodes: in launch order"]
    lines += [f"    {(k.name, k.kind, tuple(k.nodes))!r}," for k in w.kernels]
    return lines + [")"]


def generate(graph, outputs: list, updates: dict, plan, title: str = "",
             interpret: bool = True, matmul_precision: str = "ieee") -> str:
    """Source text of the module computing `outputs` (and applying `updates`) with Triton
    kernels; `interpret`: for the Triton interpreter (CPU, core tl math only) rather than
    a CUDA GPU (libdevice math); `matmul_precision`: tl.dot's for float32 in generated
    matmuls ("ieee", or "tf32" where torch allows TF32 matmuls)."""
    w = HostWriter(graph, outputs, updates, plan, interpret, matmul_precision)
    for n in w.order:
        if graph.attrs(n)["op"] not in VIEWS + LEAVES + ("map", "reduce", "matmul"):
            raise NotImplementedError(f"triton backend: no code for op "
                                      f"{graph.attrs(n)['op']!r} (node {n!r})")
        if graph.attrs(n)["op"] == "rand" and (n in outputs or any(
                graph.attrs(u)["op"] not in ("map", "reduce") for u in graph.users(n))):
            raise NotImplementedError(f"triton backend: rand node {n!r} is drawn inside the "
                                      "kernels that read it; return it or feed it to a "
                                      "matmul or view through a map (e.g. 1.0 * u)")
    sources, run_lines = w.body()   # first: the helpers the header imports are known then
    helpers = [JIT_HELPERS[h] for h in sorted(w.ctx.helpers) if h in JIT_HELPERS]
    parts = header(w, title) + ["\n\n" + h for h in helpers] + ["\n" + s for s in sources] + \
        [""] + w.allocate() + ["", ""] + w.run(run_lines)
    return "\n".join(parts) + "\n"
