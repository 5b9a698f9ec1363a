"""Where a graph node went in a compile (`graphc code MODEL --explain NODE`): its kernel,
its formula, the nodes fusion merged into it or it into, and the lines of the generated
source whose comments name it; or which pass removed it, or the nearest names."""
from __future__ import annotations

import difflib
import re

from graphc.codegen.common import comment, merged
from graphc.passes.pipeline import PASSES

from .graph import Graph
from .lowering import Lowering
from .printing import describe

MAX_LINES = 40   # source lines shown per file


class ExplainError(ValueError):
    """A node that the compile does not compute: the message says why and what is near."""


def explain(low: Lowering, node: str, files: dict) -> str:
    """The report for `node` of lowering `low`; `files`: {label: generated text}."""
    g = low.fused
    if g is None:
        raise ValueError(f"{low.title}: lowered only to the {list(low.timings)[-1]} stage")
    hosts = [h for h in g.topo() if node in g.attrs(h).get("fused_from", ())]
    if node in g:
        lines = _present(g, node)
    elif hosts:
        lines = _merged(g, low.optimized, node, hosts)
    else:
        raise ExplainError(_missing(low, g, node))
    for label, text in files.items():
        lines += _source_lines(label, text, node)
    return "\n".join(lines)


def _present(g: Graph, node: str) -> list:
    a = g.attrs(node)
    where = f"kernel {a['kernel']}" if "kernel" in a else "no kernel (a leaf or a view)"
    kind = {k.name: k.kind for k in g.nx.graph.get("kernels") or []}.get(a.get("kernel"))
    lines = [f"{node}: {a['op']} {_type(a)}, {where}" + (f" ({kind})" if kind else ""),
             f"  formula: {node} = {describe(g, node)}"]
    lines += [f"  merged into it by fuse: {m} = {e}" for m, e in merged(g, node)]
    return lines


def _merged(g: Graph, before: Graph | None, node: str, hosts: list) -> list:
    kernels = sorted({g.attrs(h)["kernel"] for h in hosts if "kernel" in g.attrs(h)})
    lines = [f"{node}: merged by fuse into {', '.join(hosts)} (kernel "
             f"{', '.join(kernels)}): computed there, not stored"]
    if before is not None and node in before:
        lines.append(f"  formula: {node} = {describe(before, node)}  (before fusion)")
    for h in hosts:
        value = dict(merged(g, h))[node]
        lines.append(f"  in {h}: {node} = {value}; {h} = {describe(g, h)}")
    return lines


def _type(a: dict) -> str:
    shape = a["shape"]
    return f"({', '.join(map(str, shape))}{',' if len(shape) == 1 else ''}) {a['dtype']}"


def _source_lines(label: str, text: str, node: str) -> list:
    """'  <line>  [kernel]  <text>' for each line whose comment names `node`."""
    mark = "//" if label.endswith(".c") else "#"
    name = re.compile(rf"(?<![\w.]){re.escape(comment(node))}(?![\w])")
    header = re.compile(rf"^\s*{re.escape(mark)} ---- (?:kernel )?([\w]+)")
    found, kernel = [], ""
    for number, line in enumerate(text.splitlines(), 1):
        head = header.match(line)
        if head:
            kernel = head[1]
        at = line.find(mark)
        if at >= 0 and name.search(line, at):
            where = f"  [{kernel}]" if kernel else ""
            found.append(f"  {number:5d}{where}  {line.strip()}")
    more = len(found) - MAX_LINES
    shown = found[:MAX_LINES] + ([f"  ... and {more} more"] if more > 0 else [])
    return [f"{label}: {len(found) or 'no'} line(s) name {node}"] + shown


def _missing(low: Lowering, g: Graph, node: str) -> str:
    """Why `node` is not in the compile (`g`, its fused graph): the pass that removed it,
    or the nearest names."""
    computed = sorted(g.nx.nodes)
    near = difflib.get_close_matches(node, computed, n=5, cutoff=0.5)
    nearest = f"nearest computed: {', '.join(near)}" if near else "no computed name is near it"
    if node in low.graph:
        return f"node {node!r} of {low.title} is not computed: {_removed_by(low, node)}; " \
               + nearest
    return f"no node named {node!r} in {low.title}; {nearest}"


def _removed_by(low: Lowering, node: str) -> str:
    """Rerun the optimisation passes one at a time: the first whose result lacks `node`
    (and what its readers read instead), or fuse."""
    keep = low.outputs + list(low.updates.values())
    g = low.graph
    for name, run in PASSES:
        after = run(g, keep)
        if node not in after:
            return f"removed by {name}" + _instead(g, after, node)
        if after.attrs(node)["op"] == "const" and g.attrs(node)["op"] != "const":
            return f"folded into a constant by {name}" + (
                "" if _reaches(low, node) else ", then removed as unread")
        g = after
    readers = low.optimized.users(node) if low.optimized is not None else []
    return ("removed by fuse once nothing read it" +
            (f" (read only by {', '.join(readers)}, which fuse merged or folded)"
             if readers else ""))


def _instead(before: Graph, after: Graph, node: str) -> str:
    """'; its reader u reads X instead' where a reader kept its other arguments, else
    '; its reader u computes it itself' (the pass rewrote the reader)."""
    for u in before.users(node):
        if u not in after:
            continue
        old, new = before.args(u), after.args(u)
        others = [i for i, x in enumerate(old) if x != node]
        if len(old) == len(new) and all(old[i] == new[i] for i in others):
            swapped = {new[i] for i, x in enumerate(old) if x == node}
            return f"; its reader {u} reads {', '.join(sorted(swapped))} instead"
        return f"; its reader {u} was rewritten without it ({u} = {describe(after, u)})"
    return " (nothing read it)" if not before.users(node) else ""


def _reaches(low: Lowering, node: str) -> bool:
    return low.optimized is not None and node in low.optimized
