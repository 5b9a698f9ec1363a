"""Where a kernel's loads and stores point: a tensor's element offset over a kernel's
index space, from the tensor's strides (known from its shape when it is contiguous,
passed from the host when it is a view) and 0 along broadcast axes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from graphc import exprs, shapes
from graphc.printing import describe

from ..common import comment, held, merged_lines, scalar_source, shape_source, temp_labels
from ..schedule import VIEWS, fused_expressions
from .printer import TL_DTYPE, print_expr


@dataclass
class Context:
    """What every kernel writer of one module shares."""
    graph: object
    names: dict                 # node -> identifier
    dims: dict                  # dim name -> identifier
    libdevice: bool = False     # GPU-only math (tanh, log1p, pow) from libdevice
    matmul_precision: str = "ieee"  # tl.dot's float32 inputs: "ieee", or "tf32" as torch allows
    in_place: frozenset = frozenset()  # stored nodes that overwrite a parameter's storage
    helpers: set = field(default_factory=set)  # jit helpers the kernels call, libdevice
    host_helpers: set = field(default_factory=set)  # graphc.triton_host's, called by run()

    def host(self, fn: str, *args) -> str:
        """A call of graphc.triton_host's `fn` in the host code: the module imports it."""
        self.host_helpers.add(fn)
        return f"{fn}({', '.join(map(str, args))})"

    def contiguous(self, node) -> bool:
        """Whether the runtime tensor of `node` is contiguous. Buffers, parameters, consts
        and feeds are (the runtime makes them so); a reshape of one is; other views and
        iota ramps are not, and are read through strides passed from the host. A rand is
        drawn at its offset in its own shape, as if stored contiguously."""
        op = self.graph.attrs(node)["op"]
        if op == "reshape":
            return self.contiguous(self.graph.args(node)[0])
        return op not in ("permute", "broadcast", "iota")


@dataclass
class Arg:
    """One kernel parameter and the host expression passed for it (`*` unpacks strides)."""
    name: str
    host: str


class KernelWriter:
    """Shared machinery of the kernel templates: kernel parameters, loads of inputs
    (one per input and index space), member statements, dims used."""

    kind = ""

    def __init__(self, ctx: Context, kernel):
        self.ctx, self.kernel, self.graph = ctx, kernel, ctx.graph
        self.ptrs: list[Arg] = []
        self.strides: list[Arg] = []
        self.sizes: list[Arg] = []
        self.dims_used: set = set()
        self.loaded: dict = {}      # (node, space) -> local name
        self.values: dict = {}      # member -> local name
        self.index_needed: set = set()

    # ---- names and text ----------------------------------------------------------------
    def ident(self, node) -> str:
        return self.ctx.names[node]

    def shape(self, node) -> tuple:
        return self.graph.attrs(node)["shape"]

    def dtype(self, node) -> str:
        return self.graph.attrs(node)["dtype"]

    def scalar(self, expr) -> str:
        """A dimension expression (16, N, 16*N) as kernel source; notes the dims it reads."""
        expr = sympy.sympify(expr)
        self.dims_used |= {s.name for s in expr.free_symbols}
        return scalar_source(expr, self.ctx.dims)

    def host_shape(self, shape) -> str:
        return shape_source(shape, self.ctx.dims)

    def host_scalar(self, expr) -> str:
        """A dimension expression as host source (dims are locals of `run`)."""
        return scalar_source(expr, self.ctx.dims)

    def pointer(self, node, host: str | None = None) -> str:
        """The kernel parameter `<id>_ptr` for a tensor (added once)."""
        name = f"{self.ident(node)}_ptr"
        if all(a.name != name for a in self.ptrs):
            self.ptrs.append(Arg(name, host or self.ident(node)))
        return name

    # ---- addresses ---------------------------------------------------------------------
    def axis_index(self, axis: int, target: tuple) -> tuple:
        """(index text, part) of an axis of the kernel's index space; per template."""
        raise NotImplementedError

    def combine(self, parts: dict) -> tuple:
        """(offset text or None, mask text or None) from terms grouped by part."""
        raise NotImplementedError

    def address(self, node, target: tuple, space: str = "", label: str = "") -> tuple:
        """(offset, mask) of `node`'s element at each point of `target` (the shape the
        reading statement computes over; `node` broadcasts to it, NumPy-style). A view's
        strides come from the host as `<label>_stride<axis>`."""
        own, host_target = tuple(self.shape(node)), tuple(target)
        if all(d == 1 for d in self.shape(self.base(node))):
            return None, None   # one element (maybe broadcast): a scalar load
        if space == "row" and len(target) < self.rank:
            own, target = own + (1,), host_target + (1,)   # (R,) read as (R, 1)
        strided = not self.ctx.contiguous(node)
        if strided:
            label = label or self.ident(node)
            stride_names = [f"{label}_stride{a}" for a in range(len(host_target))]
            strides = self.ctx.host("broadcast_strides", self.ident(node),
                                    self.host_shape(host_target))
            arg = Arg(", ".join(stride_names), f"*{strides}")
            if all(a.name != arg.name for a in self.strides):  # a looped kernel loads again
                self.strides.append(arg)
        parts: dict = {}
        lead = len(target) - len(own)
        for a in range(len(target)):
            b = a - lead
            if b < 0 or own[b] == 1:
                continue  # a broadcast axis: stride 0, no term
            idx, part = self.axis_index(a, target)
            if strided:
                term = f"{idx} * {stride_names[a]}"
            else:
                stride = self.scalar(shapes.size(own[b + 1:]))
                term = idx if stride == "1" else f"{idx} * {stride}"
            parts.setdefault(part, []).append(term)
        return self.combine(parts)

    # ---- loads and statements ----------------------------------------------------------
    def load(self, node, target: tuple, space: str = "") -> tuple:
        """Lines loading an input once per space; returns (lines, local name)."""
        key = (node, space)
        if key in self.loaded:
            return [], self.loaded[key]
        name = self.ident(node) + (f"_{space}" if space and any(
            k[0] == node for k in self.loaded) else "")
        self.loaded[key] = name
        if self.graph.attrs(node)["op"] == "iota":
            return [f"{name} = {self.ramp(node, target, space)}  # {comment(node)}"], name
        if self.graph.attrs(node)["op"] == "rand":
            return self.draw(node, name, target, space), name
        ptr = self.pointer(node)
        offset, mask = self.address(node, target, space, label=name)
        where = f"{ptr} + {offset}" if offset else ptr
        masked = f", mask={mask}" if mask else ""
        return [f"{name} = tl.load({where}{masked})  # {comment(node)}"], name

    def ramp(self, node, target: tuple, space: str) -> str:
        """An iota is the index along its axis: computed, not loaded."""
        a = self.graph.attrs(node)
        own, target = tuple(a["shape"]), tuple(target)
        if space == "row" and len(target) < self.rank:
            own, target = own + (1,), target + (1,)
        if own[a["axis"]] == 1:
            return f"tl.zeros((), {TL_DTYPE[a['dtype']]})"
        idx, part = self.axis_index(a["axis"] + len(target) - len(own), target)
        return f"{self.combine({part: [idx]})[0]}.to({TL_DTYPE[a['dtype']]})"

    def draw(self, node, name: str, target: tuple, space: str) -> list:
        """A rand node is computed, not loaded: Philox keyed by seed * 2**32 + step, at the
        element's offset in the rand's own (contiguous) shape, so every kernel that reads
        it draws the same numbers."""
        a = self.graph.attrs(node)
        lines, step = self.load(self.graph.args(node)[0], target, space)
        offset, _ = self.address(node, target, space, label=name)
        if offset is None:
            offset = "tl.zeros((), tl.int64)"
        key = f"({a['seed']} << 32) + {step}.to(tl.int64)"  # as the NumPy backend's key
        value = f"tl.rand({key}, {offset})"
        if a["dtype"] != "float32":
            value += f".to({TL_DTYPE[a['dtype']]})"
        return lines + [f"{name} = {value}  # {comment(node)} = "
                        f"{comment(describe(self.graph, node), 100)}"]

    def operands(self, node, target: tuple, space: str = "") -> tuple:
        """(load lines, symbol -> local name) for a map member's arguments."""
        lines, names = [], {}
        for i, x in enumerate(self.graph.args(node)):
            value = self.member_value(x)
            if value is not None:
                names[exprs.arg(i).name] = value
            else:
                more, local = self.load(x, target, space)
                lines += more
                names[exprs.arg(i).name] = local
        names.update(self.ctx.dims)
        return lines, names

    def base(self, node) -> str:
        """The node whose storage a view chain reads."""
        while self.graph.attrs(node)["op"] in VIEWS:
            node = self.graph.args(node)[0]
        return node

    def member_value(self, x) -> str | None:
        """The local holding `x` when it is a member, or a view of one that is the same
        value in registers (a value per row seen as (R,), (R, 1) or (R, C)); None when `x`
        is read from memory."""
        if x in self.values:
            return self.values[x]
        base = self.base(x)
        if base == x or base not in self.kernel.nodes:
            return None
        if base in self.values and self.alias_ok(base, x):
            return self.values[base]
        raise NotImplementedError(f"triton backend: kernel {self.kernel.name} reads {x!r}, a "
                                  f"view of its own member {base!r} that moves elements")

    def alias_ok(self, base, view) -> bool:
        """Whether `view` of member `base` holds the same value at every point of the
        kernel's index space (per template)."""
        own = self.shape(base)
        return all(d == 1 for d in own) or tuple(own) == tuple(self.shape(view))

    def statement(self, node, target: tuple, space: str = "") -> list:
        """The loads a map member needs, then `member = <expr>  # member = <sympy>`; a
        subexpression the fused expression repeats (tanh(a) in a chain's derivative) is
        computed once, into `<member>_c0, <member>_c1, ...` (sympy.cse)."""
        lines, names = self.operands(node, target, space)
        dtype = self.dtype(node)
        me = self.ident(node)
        shared, (expr,) = sympy.cse(self.graph.attrs(node)["expr"],
                                    symbols=sympy.numbered_symbols(f"{me}_c"))
        readable = {exprs.arg(i): sympy.Symbol(x) for i, x in enumerate(self.graph.args(node))}
        labels = temp_labels(shared, readable, held(self.graph, [node]))
        body, temps = [], set()
        needed = set(expr.free_symbols)   # cse may leave a temporary unused (exp(a)*exp(-a))
        for sym, sub in reversed(shared):
            if sym in needed:
                needed |= sub.free_symbols
        for sym, sub in [(t, e) for t, e in shared if t in needed]:
            body.append(f"{sym.name} = {self.print(sub, names, dtype, temps)}  "
                        f"# {comment(labels[sym]) + ' = ' if sym in labels else ''}"
                        f"{comment(str(sub.xreplace(readable)), 100)}")
            names[sym.name] = sym.name
            temps.add(sym.name)
        text = self.print(expr, names, dtype, temps)
        if expr.is_Number and not text.startswith("tl.full("):
            # a literal alone would be a Python int (or float32): type it
            text = f"tl.full((), {text}, {TL_DTYPE.get(dtype, 'tl.float32')})"
        self.values[node] = me
        return lines + body + [f"{me} = {text}  # {comment(node)} = "
                               f"{comment(describe(self.graph, node), 100)}"]

    def print(self, expr, names: dict, dtype: str, temps=()) -> str:
        """Triton source of a SymPy expression over `names` (noting dims and helpers);
        `temps`: the cse temporaries among them."""
        text, dims = print_expr(expr, names, dtype if dtype in TL_DTYPE else "float32",
                                self.ctx.libdevice, temps)
        self.dims_used |= {d for d in dims if d in self.ctx.dims}  # not cse temporaries
        if self.ctx.libdevice and "libdevice." in text:
            self.ctx.helpers.add("libdevice")
        return text

    def function(self, constexprs: list, body: list, summary: str, name: str = "",
                 decorators: list = ()) -> str:
        """The kernel's source: a header (kind, members, fused expressions), then the
        @triton.jit function (`name`: a second function of the kernel, else its own;
        `decorators`: lines above @triton.jit, such as an autotune)."""
        k = self.kernel
        head = [f"# ---- {name or k.name}: {k.kind} {summary}",
                f"# nodes: {comment(', '.join(k.nodes), 200)}",
                *[f"# {comment(line, 200)}" for line in merged_lines(self.graph, k.nodes)],
                f"# stores: {comment(', '.join(k.outputs), 200)}"]
        fused = fused_expressions(self.graph, k.nodes)
        head += [f"#   {comment(o)} = {comment(fused[o], 120)}" for o in k.outputs]
        return "\n".join(head + list(decorators) + ["@triton.jit", self.signature(constexprs, name)]
                         + ["    " + line for line in body]) + "\n"

    def dim_args(self) -> list:
        """The graph dims the kernel reads, as scalar parameters."""
        return [Arg(self.ctx.dims[d], self.ctx.dims[d]) for d in sorted(self.dims_used)]

    def signature(self, constexprs: list, name: str = "") -> str:
        """`def name(pointers, strides, sizes, dims, CONSTEXPRS):`"""
        args = [a.name for a in self.ptrs + self.strides + self.sizes + self.dim_args()]
        args += [f"{c}: tl.constexpr" for c in constexprs]
        return f"def {name or self.kernel.name}({', '.join(args)}):"

    def host_args(self) -> list:
        """Host expressions for the kernel's parameters, in order."""
        return [a.host for a in self.ptrs + self.strides + self.sizes + self.dim_args()]


def tile_offset(down: list | None, across: list | None, down_mask: str,
                across_mask: str) -> tuple:
    """(offset, mask) over a 2-D tile from the terms indexing its first axis (`down`, read
    as [:, None]) and its second (`across`, as [None, :]); either may be missing."""
    def group(terms):   # one operand of [:, None]: bracketed when a sum or product
        text = " + ".join(terms)
        return text if text.isidentifier() else f"({text})"
    if down and across:
        return f"{group(down)}[:, None] + {group(across)}[None, :]", "mask"
    if down:
        return f"{group(down)}[:, None]", f"{down_mask}[:, None]"
    if across:
        return f"{group(across)}[None, :]", f"{across_mask}[None, :]"
    return None, None


def neutral(fn: str, dtype: str) -> str:
    """The value masked lanes take before a reduction: 0 for sum, -inf/+inf for max/min;
    for int64 max/min the least/greatest int64 (a float fill would make the lanes float,
    rounding values past 2**24)."""
    if fn == "sum":
        return "0" if dtype == "int64" else "0.0"
    if dtype == "int64":
        return str(-2 ** 63) if fn == "max" else str(2 ** 63 - 1)
    return 'float("-inf")' if fn == "max" else 'float("inf")'


def combine_fn(fn: str) -> str:
    """The jit helper combining two partial maxima (minima), keeping NaN."""
    return "maximum_nan" if fn == "max" else "minimum_nan"


def fold_step(fn: str, running: str, part: str, ctx: Context) -> str:
    """A running reduction folded with one more partial result: + for sum, else the
    NaN-keeping max/min helper."""
    if fn == "sum":
        return f"{running} + {part}"
    ctx.helpers.add(combine_fn(fn))
    return f"{combine_fn(fn)}({running}, {part})"


def reduce_call(fn: str, value: str, axis: int, ctx: Context) -> str:
    """tl.sum, or max/min through a NaN-keeping combine function (torch.amax keeps NaN;
    tl.max's default combine drops it)."""
    if fn == "sum":
        return f"tl.sum({value}, axis={axis})"
    ctx.helpers.add(combine_fn(fn))
    return f"tl.reduce({value}, {axis}, {combine_fn(fn)})"
