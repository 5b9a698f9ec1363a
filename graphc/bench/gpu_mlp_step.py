"""One SGD training step (momentum 0.9) of the large MLP (batch 4096, 1024-4096-4096-10,
float32, tanh, softmax cross-entropy) on a GPU, judged against its targets. The step, its
data, its contenders and their loss check are `graphc bench mlp_large`'s (one definition,
training.mlp_workload): graphc's generated step (Triton kernels, cuBLAS matmuls through
torch), the same step with matmul='fused' (generated Triton matmuls with their epilogues
inside, autotuned), PyTorch eager and torch.compile from the same initial weights; compile
times: graphc cold (no Triton JIT), the Triton JIT (graphc's first call's extra time) and
torch.compile's first call. The record's "matmul_choice" says which graphc matmul path was
faster: the measurement the default (library) waits for.

    python -m graphc.bench.gpu_mlp_step [--smoke] [--batch 4096] [--sizes 1024,4096,4096,10]
    python -m graphc.bench.gpu_mlp_step --compile-only    # graphc's compile time, any machine
"""
from __future__ import annotations

import numpy as np

import graphc as gc
from graphc import lowering_memo

from . import device as devices, gpu, harness, training
from .base import graphc_name
from .device import Device

NAME = "mlp_step"
GRAPHC = graphc_name("triton")
FUSED = f"{GRAPHC} matmul='fused'"   # the row name training.mlp_workload gives it
EAGER, COMPILED = "torch eager", "torch.compile"
GRAPHCS = (GRAPHC, FUSED)
WITHIN_COMPILED = 1.10   # target: graphc time / torch.compile time
CHECKED_STEPS = training.CHECKED_STEPS


def start(args, device: str) -> tuple[dict, list, dict]:
    """graphc bench's MLP step at these sizes: graphc compiled both ways (timed; cold,
    setup() gave the caches fresh folders), then its rows, whose value check makes (and
    times) every first call: Triton's JIT and torch.compile happen there. Returns (the
    compiled steps, the rows, the compile record)."""
    work = training.mlp_workload(NAME, args.sizes, args.batch, args.torch_compile,
                                 Device(("triton",), device), lr=args.lr, compile_kw={
                                     "mode": args.compile_mode,
                                     "backend": args.compile_backend})
    compile_s, step = harness.timed(lambda: work.compile_graphc("triton"))
    fused_s, fused = harness.timed(lambda: work.compile_graphc("triton", "fused"))
    rows = work.rows({"triton": step}, fused)
    record = {"graphc_compile_cold_s": compile_s,
              "graphc_compile_stages_s": dict(step.timings),
              "graphc_fused_compile_cold_s": fused_s,
              "first_call_s": dict(work.first_calls), "torch_compile_skipped":
              work.skipped.get(COMPILED) or gpu.compile_note(args),
              "agreement": agreement(work.checks)}
    return {GRAPHC: step, FUSED: fused}, rows, record


def agreement(checks: dict) -> dict:
    """The value check's losses (it raised if they disagreed), relative to eager's."""
    losses = checks["losses"]
    eager = np.array(losses[EAGER])
    diff = {k: float(np.max(np.abs(np.array(v) - eager) / np.abs(eager)))
            for k, v in losses.items() if k != EAGER}
    return {"tolerance": checks["tolerance"], "losses": losses,
            "max_relative_difference_to_eager": diff, "agree": True}


def matmul_flops(sizes: list, batch: int) -> int:
    """Multiply-adds x 2 of a step's matmuls: forward, d weights, d inputs except x's."""
    pairs = sum(a * b for a, b in zip(sizes, sizes[1:]))
    return 2 * batch * (3 * pairs - sizes[0] * sizes[1])


def run(args) -> dict:
    """Compile, check losses, time; returns the JSON record."""
    device = gpu.setup(args, "gpu_mlp_step")
    gpu.warm_device(args)
    steps, rows, comp = start(args, device)
    agree = comp.pop("agreement")
    times = devices.interleaved({r.name: r.call for r in rows}, device, args.rounds,
                                args.reps, args.warmup)
    stats = {k: harness.summary(t) for k, t in times.items()}
    med = {k: s["median_us"] * 1e-6 for k, s in stats.items()}
    comp["graphc_triton_jit_s"] = comp["first_call_s"][GRAPHC] - med[GRAPHC]
    comp["graphc_fused_triton_jit_and_autotune_s"] = comp["first_call_s"][FUSED] - med[FUSED]
    choice = {"library time / fused time": med[GRAPHC] / med[FUSED],
              "faster": "fused" if med[FUSED] < med[GRAPHC] else "library"}
    if COMPILED in med:
        comp["torch_compile_first_call_s"] = comp["first_call_s"][COMPILED]
    flops = matmul_flops(args.sizes, args.batch)
    ratios = {f"{k} time / graphc time": med[k] / med[GRAPHC] for k in med if k != GRAPHC}
    within = med[GRAPHC] / med[COMPILED] if COMPILED in med else None
    targets = [gpu.judge("graphc faster than eager", ratios[f"{EAGER} time / graphc time"],
                         ">", 1.0, args.smoke),
               gpu.judge(f"graphc time / torch.compile time <= {WITHIN_COMPILED}", within,
                         "<=", WITHIN_COMPILED, args.smoke)]
    return {"benchmark": NAME, "smoke": args.smoke,
            "config": {"batch": args.batch, "sizes": args.sizes, "activation": "tanh",
                       "loss": "softmax cross-entropy",
                       "optimizer": f"SGD lr={args.lr} momentum={training.MOMENTUM}",
                       "dtype": "float32", "matmul_flops_per_step": flops,
                       **gpu.run_config(args)},
            "environment": devices.environment(device),
            "graphc_kernels": gpu.kernel_kinds(steps[GRAPHC]),
            "graphc_fused_kernels": gpu.kernel_kinds(steps[FUSED]), "matmul_choice": choice,
            "compile": comp, "agreement": agree, "times_us": stats,
            "matmul_TFLOPs": {k: flops / t / 1e12 for k, t in med.items()},
            "ratios": ratios, "targets": targets,
            "notes": [gpu.smoke_note(device)] if args.smoke else []}


def report(record: dict) -> str:
    """The printed summary: step times, targets, losses, compile times."""
    rows = gpu.time_rows(record["times_us"], GRAPHC, record["matmul_TFLOPs"])
    cfg, agree, comp = record["config"], record["agreement"], record["compile"]
    sizes = "-".join(map(str, cfg["sizes"]))
    lines = gpu.header(record, f"MLP training step {sizes}, batch {cfg['batch']}, tanh, "
                               f"softmax cross-entropy, {cfg['optimizer']}, float32")
    lines += [harness.table(rows, ["step", "median µs", "IQR µs", "matmul TFLOP/s",
                                   "time / graphc"]),
              gpu.targets_table(record["targets"]),
              f"losses over {CHECKED_STEPS} steps, max relative difference to eager: "
              + ", ".join(f"{k} {v:.1e}" for k, v in
                          agree["max_relative_difference_to_eager"].items())
              + f"; graphc agrees ({agree['tolerance']}): {agree['agree']}",
              f"compile: graphc cold cache, graph to callable, no Triton JIT "
              f"{comp['graphc_compile_cold_s']:.2f} s; Triton JIT (first call's extra time) "
              f"{comp['graphc_triton_jit_s']:.2f} s",
              f"matmul='fused' (Triton matmuls, epilogues inside): cold compile "
              f"{comp['graphc_fused_compile_cold_s']:.2f} s, JIT and autotuning "
              f"{comp['graphc_fused_triton_jit_and_autotune_s']:.2f} s; library time / fused "
              f"time {record['matmul_choice']['library time / fused time']:.3f}: "
              f"{record['matmul_choice']['faster']} is faster"]
    if "torch_compile_first_call_s" in comp:
        lines.append(f"torch.compile first call (compiles forward and backward) "
                     f"{comp['torch_compile_first_call_s']:.1f} s")
    return "\n".join(lines + gpu.compile_skipped(comp))


def compile_only(args) -> dict:
    """graphc's cold compile of the full-size step (gc.compile: autodiff to imported
    module; building the graph and drawing its weights not counted), both matmul paths,
    best of 3 (a fresh cache folder each time; torch and triton imported first). Needs
    no GPU: without one the module is generated for the interpreter, the same passes and
    printing (the GPU flavour adds autotune decorators); Triton's JIT is not included."""
    import os
    import warnings
    if not _cuda():
        os.environ["TRITON_INTERPRET"] = "1"
        warnings.filterwarnings("ignore", message="Triton interpreter")
    import triton  # noqa: F401  (imported before timing, as the timed run has it)
    times, kernels = {}, {}
    optimizer = gc.SGD(lr=args.lr, momentum=training.MOMENTUM)   # mlp_workload's step
    for matmul in ("library", "fused"):
        best = []
        for _ in range(3):
            os.environ["GRAPHC_CACHE_DIR"] = gpu.fresh_dir("graphc")
            g, loss = training.mlp_graph(f"bench_{NAME}", args.sizes)   # not timed: init
            with lowering_memo.off():   # cold: the same graph's lowering is not reused
                seconds, step = harness.timed(lambda: gc.compile(
                    g, loss, optimizer=optimizer, backend="triton", matmul=matmul))
            best.append(seconds)
        times[matmul], kernels[matmul] = min(best), len(step.kernels)
    device = "cuda" if _cuda() else "cpu"
    return {"benchmark": f"{NAME}_compile", "config": {"sizes": args.sizes, "best_of": 3,
                                                         "cold_cache": True},
            "environment": devices.environment(device), "compile_cold_s": times,
            "kernels": kernels, "target_s": 2.0}


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def compile_report(record: dict) -> str:
    rows = [[m, t, record["kernels"][m]] for m, t in record["compile_cold_s"].items()]
    sizes = "-".join(map(str, record["config"]["sizes"]))
    return "\n".join([f"graphc cold compile of the {sizes} MLP training step (graph to "
                      "imported module, no Triton JIT), best of 3; target < 2 s",
                      harness.table(rows, ["matmul", "seconds", "kernels"])])


def parse_args(argv=None):
    p = gpu.parser(__doc__, rounds=20, reps=5, warmup=3)
    p.add_argument("--batch", type=int, default=None, help="default 4096; 16 with --smoke")
    p.add_argument("--sizes", default=None,
                   help="layer widths, default 1024,4096,4096,10; 16,32,32,10 with --smoke")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--compile-only", action="store_true",
                   help="only graphc's compile time (no GPU needed); JSON with --out")
    args = p.parse_args(argv)
    args.batch = args.batch or (16 if args.smoke else 4096)
    args.sizes = [int(s) for s in (args.sizes or
                                   ("16,32,32,10" if args.smoke else "1024,4096,4096,10")
                                   ).split(",")]
    if len(args.sizes) < 2:
        p.error("--sizes needs at least an input and an output width")
    return gpu.finish_args(args)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.compile_only:
        record = compile_only(args)
        print(compile_report(record))
        if args.out:
            print(f"written: {harness.write_json(args.out, record)}")
        return record
    return gpu.main(NAME, lambda _: args, run, report, argv)


if __name__ == "__main__":
    main()
