"""The `graphc` command (also `python -m graphc`): show a model's graph at any stage, its
gradients as math, its generated code; train it.

    graphc show  MODEL [--stage forward|backward|optimized|fused]
                       [--format text|dot|svg|png] [-o FILE]
    graphc grad  MODEL [--wrt NAME ...] [--latex]
    graphc code  MODEL [--backend numpy|c|triton] [--matmul library|fused] [-o DIR]
                       [--explain NODE]
    graphc train MODEL [--epochs N] [--batch-size B] [--lr LR] [--backend ...] [--matmul ...]
                 [--plot loss.png]

MODEL is a model file: a Python file whose build() returns {"graph", "loss", "data",
"optimizer"} (graphc.modelfile).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from . import modelfile
from .errors import GraphError
from .render import pyplot, save_figure

STAGES = ("forward", "backward", "optimized", "fused")


def staged_graph(spec, stage: str, matmul: str = "library", backend: str = "numpy"):
    """(graph at `stage`, names of the forward nodes, the lowering) of the model's
    training step, optimizer updates included: the lowering `graphc code` prints."""
    from .lowering import lower
    until = {"forward": "backward", "backward": "backward"}.get(stage, stage)
    low = lower(spec.graph, (), backend, loss=spec.loss, optimizer=spec.optimizer,
                matmul=matmul, until=until)
    return low.stage(stage), set(spec.graph.topo()), low


def check_matmul_backend(args) -> None:
    if args.matmul == "fused" and args.backend != "triton":
        raise ValueError(f"--matmul fused generates Triton matmuls: it needs --backend triton, "
                         f"not {args.backend} (whose matmuls are library calls)")


def cmd_show(args) -> None:
    from .codegen.schedule import kernel_counts
    check_matmul_backend(args)
    spec = modelfile.load(args.model)
    graph, forward, low = staged_graph(spec, args.stage, args.matmul, args.backend)
    kernels = f", {kernel_counts(low.kernels)}" if args.stage == "fused" else ""
    if args.format == "text":
        text = f"# {low.title}, {args.stage} graph{kernels}\n{graph}"
        if args.output:
            Path(args.output).write_text(text + "\n")
            print(f"written: {args.output}")
        else:
            print(text)
        return
    from . import render
    out = Path(args.output or f"{spec.graph.name}-{args.stage}.{args.format}")
    how = render.save(graph, out, args.format, forward)
    print(f"written: {out} ({args.stage} graph, {len(graph)} nodes{kernels}, drawn by {how})")


def cmd_grad(args) -> None:
    from .api import show_grad
    spec = modelfile.load(args.model)
    wrt = args.wrt or None
    report = show_grad(spec.graph, spec.loss, wrt)
    print(report.latex() if args.latex else report)


def compile_step(spec, backend: str, lr: float | None = None, matmul: str = "library"):
    from .api import compile
    from .optim import SGD
    optimizer = spec.optimizer or SGD()
    if lr is not None:
        optimizer.lr = lr
    return compile(spec.graph, spec.loss, optimizer=optimizer, backend=backend, matmul=matmul)


def cmd_code(args) -> None:
    check_matmul_backend(args)
    spec = modelfile.load(args.model)
    step = compile_step(spec, args.backend, matmul=args.matmul)
    if args.explain:
        from .explain import explain
        sources = {str(step.path): step.source}
        if step.c_path is not None:   # the translation unit first, then its host module
            sources = {str(step.c_path): step.c_source, **sources}
        print(explain(step.lowering, args.explain, sources))
        return
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        files = [(step.path, out / f"{spec.graph.name}_step.py")]
        if step.c_path is not None:   # the C kernels, and the host module that calls them
            files.insert(0, (step.c_path, out / f"{spec.graph.name}_step.c"))
        for cached, path in files:
            text = cached.read_text()
            path.write_text(text)
            print(f"written: {path} ({len(text.splitlines())} lines; cached at {cached})")
    else:
        print(step.source if step.c_source is None else step.c_source + "\n" + step.source)


def cmd_train(args) -> None:
    from .trainer import Trainer
    spec = modelfile.load(args.model)
    if not spec.data:
        raise modelfile.ModelFileError(f"{args.model}: build() returned no 'data' to train on")
    step = compile_step(spec, args.backend, args.lr, args.matmul)
    history = Trainer(step).fit(spec.data, epochs=args.epochs, batch_size=args.batch_size,
                                seed=args.seed, progress=not args.no_progress)
    print(summary(step, spec, history, args.batch_size))
    if args.plot:
        plot_loss(history, spec.graph.name, Path(args.plot))
        print(f"loss curve: {args.plot}")


def cmd_bench(args) -> None:
    """Time graphc beside NumPy by hand, eager torch and torch.compile (graphc.bench)."""
    from . import bench, config, triton_runtime
    from .bench import harness
    from .codegen.c import build as c_build
    gpu = triton_runtime.available()
    device = bench.Device()   # the CPU: graphc's C and NumPy backends side by side
    if args.backend == "triton" or (args.backend == "auto" and gpu):
        if not gpu and not args.quick:
            raise ValueError("--backend triton times generated Triton kernels on a CUDA GPU; "
                             "none here (use --backend c or numpy, or --quick to check the "
                             "workloads under the Triton interpreter)")
        if not gpu:
            config.triton_interpret(warn=False)   # before anything imports triton
        device = bench.Device(("triton",), "cuda" if gpu else "cpu")
    elif args.backend in ("c", "numpy"):
        ok, why = c_build.available() if args.backend == "c" else (True, "")
        if not ok:
            raise ValueError(f"--backend c: the C backend is unavailable here ({why})")
        device = bench.Device((args.backend,))
    if args.torch_threads is not None and args.torch_threads < 1:
        raise ValueError(f"--torch-threads must be at least 1, got {args.torch_threads}")
    use_compile = args.torch_compile if args.torch_compile is not None else \
        device.name == "cuda"
    cfg = bench.BenchConfig(args.workloads or list(bench.NAMES),
                            "quick" if args.quick else "default", use_compile,
                            "--torch-compile not given (slow to compile on a CPU)"
                            if args.torch_compile is None else "--no-torch-compile",
                            device=device, named=bool(args.workloads),
                            torch_threads=args.torch_threads)
    record = bench.run(cfg)
    print(bench.report(record))
    if args.json:
        print(f"written: {harness.write_json(Path(args.json), record)}")
    if args.plot:
        print(f"written: {bench.plot(record, Path(args.plot))}")


def summary(step, spec, history, batch_size: int) -> str:
    """Kernels, ops per kernel, step time, compile time, first and last loss."""
    kernels = step.graph.nx.graph.get("kernels") or []   # the fused graph's kernel records
    n = min(batch_size, len(next(iter(spec.data.values()))))
    feeds = {k: v[:n] for k, v in spec.data.items()}
    saved = {k: np.array(v, copy=True) for k, v in step.params.items()}
    times = []
    for _ in range(20):  # timing steps update params: put them back afterwards
        t0 = time.perf_counter()
        step(feeds)
        times.append(time.perf_counter() - t0)
    for k, v in saved.items():
        step[k] = v
    sizes = [len(k.nodes) for k in kernels]
    lines = [f"model {spec.graph.name!r}: {len(spec.graph)} nodes, "
             f"{len(spec.graph.params(trainable_only=True))} trained params; "
             f"{step.backend} backend, code {step.c_path or step.path}",
             f"compile {sum(step.timings.values()) * 1e3:.0f} ms ("
             + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in step.timings.items()) + ")"]
    if sizes:
        lines.append(f"{len(kernels)} kernels, {np.mean(sizes):.1f} nodes per kernel "
                     f"(largest {max(sizes)})")
    lines.append(f"step time (batch {n}): median {np.median(times) * 1e6:.0f} µs")
    lines.append(f"loss {history.loss[0]:.4f} (epoch 1) -> {history.loss[-1]:.4f} "
                 f"(epoch {len(history.loss)})")
    return "\n".join(lines)


def plot_loss(history, title: str, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(history.step_loss, linewidth=0.8, label="per step")
    per_epoch = len(history.step_loss) / max(len(history.loss), 1)
    ax.plot([(i + 1) * per_epoch - 1 for i in range(len(history.loss))], history.loss,
            marker="o", label="epoch mean")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    save_figure(fig, path)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="graphc", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, fn, help_text):
        c = sub.add_parser(name, help=help_text, description=help_text)
        c.add_argument("model", help="model file: a .py file with build() (graphc.modelfile)")
        c.set_defaults(run=fn)
        return c

    c = command("show", cmd_show, "print or draw the graph at a stage of the pipeline")
    c.add_argument("--stage", choices=STAGES, default="forward")
    add_backend_option(c, "the backend whose lowering to show (fusion differs only for "
                          "triton with --matmul fused)")
    add_matmul_option(c)
    c.add_argument("--format", choices=("text", "dot", "svg", "png"), default="text")
    c.add_argument("-o", "--output", help="file to write (default: stdout for text, "
                   "<graph>-<stage>.<format> otherwise)")
    c = command("grad", cmd_grad, "each parameter's gradient as math, with its chain of "
                "adjoints")
    c.add_argument("--wrt", nargs="+", metavar="NAME", help="params (default: all trained)")
    c.add_argument("--latex", action="store_true", help="LaTeX instead of text")
    c = command("code", cmd_code, "the generated module of the training step")
    add_backend_option(c, "c: the C kernels, then the Python host module that calls them")
    add_matmul_option(c)
    c.add_argument("-o", "--output", metavar="DIR",
                   help="folder to write the module (and, for c, the C file) to")
    c.add_argument("--explain", metavar="NODE",
                   help="where NODE went: its kernel, formula, what fusion merged, and the "
                        "lines of the generated source that name it")
    c = command("train", cmd_train, "train on the model file's data: progress bar, summary, "
                "loss curve")
    c.add_argument("--epochs", type=int, default=10)
    c.add_argument("--batch-size", type=int, default=32)
    c.add_argument("--lr", type=float, help="learning rate (default: the model file's)")
    c.add_argument("--backend", choices=("auto", "numpy", "c", "triton"), default="auto",
                   help="auto: Triton on a CUDA GPU, else C where a C compiler works, else "
                        "NumPy")
    add_matmul_option(c)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--plot", metavar="PNG", help="write the loss curve here")
    c.add_argument("--no-progress", action="store_true")
    add_bench_parser(sub)
    return p


def add_backend_option(c, help_text: str) -> None:
    c.add_argument("--backend", choices=("numpy", "c", "triton"), default="numpy",
                   help=help_text)


def add_matmul_option(c) -> None:
    c.add_argument("--matmul", choices=("library", "fused"), default="library",
                   help="library: torch/NumPy matmul, its epilogue the next kernel; fused: a "
                        "generated Triton matmul with the epilogue inside (2-D float32)")


def add_bench_parser(sub) -> None:
    from .bench import NAMES
    c = sub.add_parser("bench", help="time graphc beside NumPy and PyTorch on a few workloads",
                       description="time graphc beside NumPy by hand, eager PyTorch and "
                       "torch.compile on a few workloads")

    def workload(text: str) -> str:
        if text not in NAMES:
            raise argparse.ArgumentTypeError(f"unknown workload {text!r}; choose from "
                                             f"{', '.join(NAMES)}")
        return text
    c.add_argument("workloads", nargs="*", type=workload, metavar="WORKLOAD",
                   help=f"any of {', '.join(NAMES)} (default: all but mlp_large and "
                        "elementwise_dram on a CPU, all but elementwise_dram on a GPU)")
    c.add_argument("--backend", choices=("auto", "c", "numpy", "triton"), default="auto",
                   help="auto: Triton on a CUDA GPU, else graphc's C and NumPy backends side "
                        "by side (the C rows skipped, with the reason, where C is "
                        "unavailable); c or numpy: that backend's rows only; triton without "
                        "a GPU needs --quick (the interpreter: a check, not a timing)")
    c.add_argument("--torch-threads", type=int, metavar="N",
                   help="run torch eager and torch.compile on N threads (default: eager at "
                        "the faster of 1 and torch's default, calibrated per row; "
                        "torch.compile at the default). graphc C's threads: "
                        "GRAPHC_NUM_THREADS (default: every core)")
    c.add_argument("--json", metavar="FILE", help="write the results as JSON here")
    c.add_argument("--plot", metavar="PNG", help="bar chart of time relative to graphc C "
                   "(graphc NumPy where C is unavailable)")
    c.add_argument("--quick", action="store_true", help="tiny sizes, few repetitions")
    c.add_argument("--torch-compile", action=argparse.BooleanOptionalAction, default=None,
                   help="time torch.compile too (default: on a GPU yes, on a CPU no: it is "
                        "slow to compile there)")
    c.set_defaults(run=cmd_bench)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except (modelfile.ModelFileError, GraphError, ValueError) as e:
        print(f"graphc {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0
