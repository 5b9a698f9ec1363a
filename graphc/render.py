"""Pictures of graphs: DOT through pydot, SVG/PNG through Graphviz's `dot` program, or,
where `dot` is missing, a layered drawing with networkx + matplotlib.

Leaves are grey, forward nodes white, backward nodes (added by autodiff) blue; a fused
graph's kernels are boxed clusters named after the kernel.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from . import ops
from .graph import Graph
from .printing import describe

FILL = {"forward": "white", "backward": "#dbe9f6", "leaf": "#eeeeee"}


def role(graph: Graph, n: str, forward: set) -> str:
    """leaf / forward / backward (added by autodiff): how a node is coloured."""
    if graph.attrs(n)["op"] in ops.LEAVES:
        return "leaf"
    return "forward" if n in forward else "backward"


def label(graph: Graph, n: str) -> str:
    a = graph.attrs(n)
    text = describe(graph, n)
    text = text if len(text) <= 60 else text[:57] + "..."
    what = a["op"] if text == a["op"] else f"{a['op']}: {text}"
    shape = "(" + ", ".join(str(d) for d in a["shape"]) + ")"
    return f"{n}\\n{what}\\n{shape} {a['dtype']}"


def pyplot():
    """matplotlib.pyplot on the Agg backend: figures go to files, no display needed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path, fmt: str | None = None) -> Path:
    """Lay out, write (making the folder) and close a matplotlib figure."""
    path = Path(path)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=fmt, dpi=110)
    pyplot().close(fig)
    return path


def _quote(s: str) -> str:
    return '"' + s.replace('"', '\\"') + '"'


def to_dot(graph: Graph, forward: set | None = None):
    """A pydot.Dot of the graph (edges labelled by argument position when a node reads
    more than one), kernels of a fused graph as clusters."""
    import pydot
    forward = set(graph.topo()) if forward is None else forward
    dot = pydot.Dot(_quote(graph.name), graph_type="digraph", rankdir="TB",
                    fontname="Helvetica")
    kernels = graph.nx.graph.get("kernels") or []
    kernel_of = {n: k for k in kernels for n in k.nodes}
    clusters = {}
    for k in kernels:
        # a subgraph named cluster_* is drawn boxed by Graphviz
        clusters[k.name] = pydot.Subgraph(f"cluster_{k.name}",
                                          label=_quote(f"{k.name} ({k.kind})"),
                                          style="rounded", color="#888888")
        dot.add_subgraph(clusters[k.name])
    for n in graph.topo():
        node = pydot.Node(_quote(n), label=_quote(label(graph, n)), shape="box",
                          style="filled", fillcolor=FILL[role(graph, n, forward)],
                          fontname="Helvetica", fontsize="10")
        k = kernel_of.get(n)
        (clusters[k.name] if k is not None else dot).add_node(node)
    for n in graph.topo():
        args = graph.args(n)
        for i, x in enumerate(args):
            edge = pydot.Edge(_quote(x), _quote(n), fontsize="9")
            if len(args) > 1:  # argument positions matter (x - y); label them
                edge.set("label", str(i))
            dot.add_edge(edge)
    return dot


def save(graph: Graph, path: Path, fmt: str, forward: set | None = None) -> str:
    """Write the picture; returns which renderer drew it ('dot' or 'matplotlib')."""
    path = Path(path)
    if fmt == "dot":
        path.write_text(to_dot(graph, forward).to_string())
        return "pydot"
    if shutil.which("dot"):
        path.write_bytes(to_dot(graph, forward).create(format=fmt))
        return "dot"
    draw_matplotlib(graph, path, fmt, forward)
    return "matplotlib"


def svg(graph: Graph) -> str:
    """The picture as SVG text (Jupyter shows graphs with it)."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "graph.svg"
        save(graph, path, "svg")
        return path.read_text()


def draw_matplotlib(graph: Graph, path: Path, fmt: str, forward: set | None = None) -> None:
    """The fallback: nodes in topological layers (networkx), coloured by role."""
    import networkx as nx
    plt = pyplot()

    forward = set(graph.topo()) if forward is None else forward
    g = nx.DiGraph(graph.nx)
    for layer, nodes in enumerate(nx.topological_generations(g)):
        for n in nodes:
            g.nodes[n]["layer"] = layer
    pos = nx.multipartite_layout(g, subset_key="layer", align="horizontal", scale=-1)
    width = max(6.0, 1.3 * max(len(v) for v in nx.topological_generations(g)))
    height = max(4.0, 0.9 * len(list(nx.topological_generations(g))))
    fig, ax = plt.subplots(figsize=(min(width, 40), min(height, 60)))
    colors = [FILL[role(graph, n, forward)] for n in g.nodes]
    nx.draw_networkx_edges(g, pos, ax=ax, arrows=True, arrowsize=8, edge_color="#777777")
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color=colors, edgecolors="#444444",
                           node_shape="s", node_size=300)
    nx.draw_networkx_labels(g, pos, ax=ax, labels={n: f"{n}\n{graph.attrs(n)['op']}"
                                                   for n in g.nodes}, font_size=6)
    ax.set_title(f"{graph.name} (grey leaves, white forward, blue backward)", fontsize=9)
    ax.axis("off")
    save_figure(fig, path, fmt)
