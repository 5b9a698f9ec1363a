"""Softmax cross-entropy, forward and backward, on (32768, 1024) float32 logits with int64
labels: graphc's generated Triton kernels (the loss and d loss / d logits) beside PyTorch
eager (F.cross_entropy and autograd) and torch.compile, in one run, values checked.

    python -m graphc.bench.gpu_softmax_ce [--smoke] [--rows 32768] [--cols 1024] [--rounds 30]

Each contender takes logits z and labels y and returns (mean loss, dz). Bytes counted: z
and y read, dz written (what any implementation must move).
"""
from __future__ import annotations

import graphc as gc

from . import device as devices, gpu, harness

NAME = "softmax_ce"
GRAPHC, EAGER, COMPILED = "graphc", "PyTorch eager", "torch.compile"
SPEEDUP_EAGER, SPEEDUP_COMPILED = 2.0, 1.0   # targets: time ratios other / graphc
TOLERANCE = 1e-5   # max |error| / max |float64 value|, for the loss and for dz


def graphc_function(rows: int, cols: int):
    """(loss, dz) of mean softmax cross-entropy, compiled for Triton."""
    g = gc.Graph("softmax_ce")
    z = g.input("z", (rows, cols))
    y = g.input("y", (rows,), dtype="int64")
    loss = gc.softmax_cross_entropy(z, y, name="loss")
    dz, = gc.grad(loss, [z])
    return gc.function(g, [loss, dz], backend="triton")


def torch_ce(z, y, loss_fn=None):
    """(loss, dz) by autograd: `loss_fn` is F.cross_entropy or a compiled wrapper of it."""
    import torch
    import torch.nn.functional as F
    zr = z.detach().requires_grad_()
    loss = (loss_fn or F.cross_entropy)(zr, y)
    dz, = torch.autograd.grad(loss, zr)
    return loss.detach(), dz


def cross_entropy(z, y):
    import torch.nn.functional as F
    return F.cross_entropy(z, y)


def contenders(args, z, y, f) -> dict:
    import torch
    fns = {GRAPHC: devices.direct_run(f, {"z": z, "y": y}),
           EAGER: lambda: torch_ce(z, y)}
    if args.torch_compile:
        compiled = torch.compile(cross_entropy, fullgraph=True, mode=args.compile_mode,
                                 backend=args.compile_backend)
        fns[COMPILED] = lambda: torch_ce(z, y, compiled)
    return fns


def accuracy(outs: dict, z, y) -> dict:
    """Loss and dz of each contender against float64 autograd on the same inputs."""
    loss64, dz64 = torch_ce(z.double(), y)
    errors = {k: {"loss": gpu.error(loss, loss64), "dz": gpu.error(dz, dz64)}
              for k, (loss, dz) in outs.items()}
    (gl, gd), (el, ed) = outs[GRAPHC], outs[EAGER]
    to_eager = {"loss": gpu.error(gl, el), "dz": gpu.error(gd, ed)}
    worst = max(*errors[GRAPHC].values(), *to_eager.values())
    return {"tolerance": TOLERANCE, "error_vs_float64": errors, "graphc_vs_eager": to_eager,
            "loss": {k: float(v[0]) for k, v in outs.items()}, "agree": worst <= TOLERANCE}


def run(args) -> dict:
    """Compile, check values, time; returns the JSON record."""
    device = gpu.setup(args, "gpu_softmax_ce")
    import torch
    gpu.warm_device(args)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    z = torch.randn(args.rows, args.cols, generator=gen, device=device) * 3
    y = torch.randint(0, args.cols, (args.rows,), generator=gen, device=device)
    compile_s, f = harness.timed(lambda: graphc_function(args.rows, args.cols))
    fns = contenders(args, z, y, f)
    outs, first_s, skipped = gpu.first_calls(fns, device, optional=(COMPILED,))
    agreement = accuracy(outs, z, y)
    times = devices.interleaved(fns, device, args.rounds, args.reps, args.warmup)
    stats = {k: harness.summary(t) for k, t in times.items()}
    moved = 2 * z.numel() * z.element_size() + y.numel() * y.element_size()
    gbs = {k: moved / (s["median_us"] * 1e-6) / 1e9 for k, s in stats.items()}
    ratios = {f"{k} time / graphc time": s["median_us"] / stats[GRAPHC]["median_us"]
              for k, s in stats.items() if k != GRAPHC}
    targets = [gpu.judge(f"graphc >= {SPEEDUP_EAGER}x eager",
                         ratios[f"{EAGER} time / graphc time"], ">=", SPEEDUP_EAGER, args.smoke),
               gpu.judge(f"graphc >= {SPEEDUP_COMPILED}x torch.compile",
                         ratios.get(f"{COMPILED} time / graphc time"), ">=", SPEEDUP_COMPILED,
                         args.smoke)]
    return {"benchmark": NAME, "smoke": args.smoke,
            "config": {"rows": args.rows, "cols": args.cols, "dtype": "float32",
                       "labels": "int64", "bytes_moved": moved, **gpu.run_config(args)},
            "environment": devices.environment(device),
            "graphc_kernels": gpu.kernel_kinds(f),
            "compile": {"graphc_s": compile_s, "graphc_first_call_s": first_s[GRAPHC],
                        "torch_compile_first_call_s": first_s.get(COMPILED),
                        "torch_compile_skipped": skipped.get(COMPILED) or
                        gpu.compile_note(args)},
            "agreement": agreement, "times_us": stats, "bandwidth_GBps": gbs,
            "ratios": ratios, "targets": targets,
            "notes": [gpu.smoke_note(device)] if args.smoke else []}


def report(record: dict) -> str:
    """The printed summary: the timing table, ratios, targets, values, compile times."""
    rows = gpu.time_rows(record["times_us"], GRAPHC, record["bandwidth_GBps"])
    cfg, agree, comp = record["config"], record["agreement"], record["compile"]
    lines = gpu.header(record, f"softmax cross-entropy forward + backward, logits "
                               f"({cfg['rows']}, {cfg['cols']}) float32, int64 labels")
    lines += [harness.table(rows, ["contender", "median µs", "IQR µs", "GB/s",
                                   "time / graphc"]),
              gpu.targets_table(record["targets"]),
              "values vs float64 (error / max|value|): " + "; ".join(
                  f"{k} loss {e['loss']:.1e} dz {e['dz']:.1e}"
                  for k, e in agree["error_vs_float64"].items())
              + f"; graphc agrees (<= {agree['tolerance']:.0e}): {agree['agree']}",
              f"graphc compile (cold cache) {comp['graphc_s']:.2f} s, first call (Triton JIT) "
              f"{comp['graphc_first_call_s']:.2f} s"]
    if comp["torch_compile_first_call_s"] is not None:
        lines.append(f"torch.compile first call {comp['torch_compile_first_call_s']:.1f} s")
    return "\n".join(lines + gpu.compile_skipped(comp))


def parse_args(argv=None):
    p = gpu.parser(__doc__, rounds=30, reps=20, warmup=5)
    p.add_argument("--rows", type=int, default=None, help="default 32768; 24 with --smoke")
    p.add_argument("--cols", type=int, default=None, help="default 1024; 33 with --smoke")
    args = p.parse_args(argv)
    args.rows = args.rows or (24 if args.smoke else 32768)
    args.cols = args.cols or (33 if args.smoke else 1024)
    return gpu.finish_args(args)


def main(argv=None) -> dict:
    return gpu.main(NAME, parse_args, run, report, argv)


if __name__ == "__main__":
    main()
