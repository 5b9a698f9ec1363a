"""Fused elementwise kernels against copy bandwidth: the forward and the backward (gradient
map) of a six-op activation chain on 2**26 float32 elements, graphc's generated Triton
kernels beside a device-to-device copy, PyTorch eager and torch.compile, in one run.

    python -m graphc.bench.gpu_elementwise [--smoke] [--log2-elements 26] [--rounds 30]

Bandwidth is counted from what each function must read and write: forward x in, y out
(8 bytes an element); backward x and the upstream gradient g in, dx out (12 bytes); copy
8 bytes. Eager PyTorch moves more than that (one pass per op); its GB/s is the same bytes
over its time, so every row compares time for the same work.
"""
from __future__ import annotations

import graphc as gc

from . import device as devices, gpu, harness

NAME = "elementwise"
COPY = "copy_ (device to device)"
G_FWD, E_FWD, C_FWD = "graphc fwd", "eager fwd", "torch.compile fwd"
G_BWD, E_BWD, C_BWD = "graphc bwd", "eager bwd", "torch.compile bwd"
CHAIN = "y = softplus(tanh(x * sigmoid(x))**2 + x)"
TARGET = 0.85      # of the copy's bandwidth, forward and backward alike
TOLERANCE = 1e-5   # max |error| / max |float64 value|: a few float32 roundings


def chain(x, sigmoid, tanh, softplus):
    """The six elementwise ops, written once for graphc nodes and torch tensors alike."""
    s = sigmoid(x)        # 1
    u = x * s             # 2
    v = tanh(u)           # 3
    w = v * v             # 4
    z = w + x             # 5
    return softplus(z)    # 6


def torch_chain(x):
    import torch
    import torch.nn.functional as F
    return chain(x, torch.sigmoid, torch.tanh, F.softplus)


def torch_vjp(x, g):
    """dx = g * dy/dx as one function of (x, g), so torch.compile sees the whole map."""
    import torch
    return torch.func.vjp(torch_chain, x)[1](g)[0]


def graphc_functions(n: int) -> tuple:
    """graphc's forward x -> y and gradient map (x, g) -> dx, compiled for Triton."""
    g = gc.Graph("activation_chain")
    x, up = g.input("x", (n,)), g.input("g", (n,))
    y = chain(x, gc.sigmoid, gc.tanh, gc.softplus)
    dx, = gc.grad(gc.sum(y * up), [x])      # d sum(y * g) / dx = g * dy/dx
    return gc.function(g, [y], backend="triton"), gc.function(g, [dx], backend="triton")


def contenders(args, x, g, fwd, bwd) -> tuple[dict, dict]:
    """(name -> call, name -> bytes it must move) for every contender of this run."""
    import torch
    n = x.numel()
    copy_dst = torch.empty_like(x)
    xr = x.detach().clone().requires_grad_()
    y_saved = torch_chain(xr)   # eager backward replays the saved graph (retain_graph)
    fns = {COPY: lambda: copy_dst.copy_(x),
           G_FWD: devices.direct_run(fwd, {"x": x}),
           E_FWD: lambda: torch_chain(x),
           G_BWD: devices.direct_run(bwd, {"x": x, "g": g}),
           E_BWD: lambda: torch.autograd.grad(y_saved, xr, g, retain_graph=True)[0]}
    if args.torch_compile:
        kw = {"mode": args.compile_mode, "backend": args.compile_backend}
        compiled_fwd = torch.compile(torch_chain, **kw)
        compiled_vjp = torch.compile(torch_vjp, fullgraph=True, **kw)
        fns[C_FWD] = lambda: compiled_fwd(x)
        fns[C_BWD] = lambda: compiled_vjp(x, g)
    four = x.element_size()
    moved = {COPY: 2 * four * n, G_FWD: 2 * four * n, E_FWD: 2 * four * n,
             C_FWD: 2 * four * n, G_BWD: 3 * four * n, E_BWD: 3 * four * n,
             C_BWD: 3 * four * n}
    return fns, {k: moved[k] for k in fns}


def accuracy(outs: dict, x, g) -> dict:
    """Each contender's error against the chain in float64 (same float32 inputs)."""
    import torch
    x64 = x.double().requires_grad_()
    y64 = torch_chain(x64)
    dx64, = torch.autograd.grad(y64, x64, g.double())
    ref = {"fwd": y64.detach(), "bwd": dx64}

    def value(out):
        return out[0] if isinstance(out, (tuple, list)) else out
    errors = {k: gpu.error(value(v), ref["fwd" if "fwd" in k else "bwd"])
              for k, v in outs.items() if k != COPY}
    to_eager = {"fwd": gpu.error(value(outs[G_FWD]), value(outs[E_FWD])),
                "bwd": gpu.error(value(outs[G_BWD]), value(outs[E_BWD]))}
    agree = max(errors[G_FWD], errors[G_BWD], *to_eager.values()) <= TOLERANCE
    return {"tolerance": TOLERANCE, "error_vs_float64": errors,
            "graphc_vs_eager": to_eager, "agree": agree}


def run(args) -> dict:
    """Compile, check values, time; returns the JSON record."""
    device = gpu.setup(args, "gpu_elementwise")
    import torch
    gpu.warm_device(args)
    n = 2 ** args.log2_elements
    gen = torch.Generator(device=device).manual_seed(args.seed)
    x = torch.randn(n, generator=gen, device=device) * 2
    g = torch.randn(n, generator=gen, device=device)
    compile_s, (fwd, bwd) = harness.timed(lambda: graphc_functions(n))
    fns, moved = contenders(args, x, g, fwd, bwd)
    outs, first_s, skipped = gpu.first_calls(fns, device, optional=(C_FWD, C_BWD))
    agreement = accuracy(outs, x, g)
    times = devices.interleaved(fns, device, args.rounds, args.reps, args.warmup)
    stats = {k: harness.summary(t) for k, t in times.items()}
    gbs = {k: moved[k] / (stats[k]["median_us"] * 1e-6) / 1e9 for k in stats}
    ratios = {"graphc fwd / copy bandwidth": gbs[G_FWD] / gbs[COPY],
              "graphc bwd / copy bandwidth": gbs[G_BWD] / gbs[COPY]}
    for other, mine in ((E_FWD, G_FWD), (C_FWD, G_FWD), (E_BWD, G_BWD), (C_BWD, G_BWD)):
        if other in stats:
            ratios[f"{other} time / {mine} time"] = (stats[other]["median_us"]
                                                     / stats[mine]["median_us"])
    targets = [gpu.judge(f"graphc {d} >= {TARGET:.0%} of copy bandwidth",
                         ratios[f"graphc {d} / copy bandwidth"], ">=", TARGET, args.smoke)
               for d in ("fwd", "bwd")]
    compiled_first = {k: first_s[k] for k in (C_FWD, C_BWD) if k in first_s}
    return {"benchmark": NAME, "smoke": args.smoke,
            "config": {"chain": CHAIN, "elements": n, "dtype": "float32",
                       "bytes_moved": moved, **gpu.run_config(args)},
            "environment": devices.environment(device),
            "graphc_kernels": {"fwd": gpu.kernel_kinds(fwd), "bwd": gpu.kernel_kinds(bwd)},
            "compile": {"graphc_fwd_and_bwd_s": compile_s,
                        "graphc_first_call_s": {k: first_s[k] for k in (G_FWD, G_BWD)},
                        "torch_compile_first_call_s": compiled_first,
                        "torch_compile_skipped": "; ".join(
                            f"{k}: {why}" for k, why in skipped.items())
                        or gpu.compile_note(args)},
            "agreement": agreement, "times_us": stats, "bandwidth_GBps": gbs,
            "ratios": ratios, "targets": targets,
            "notes": [gpu.smoke_note(device)] if args.smoke else []}


def report(record: dict) -> str:
    """The printed summary: the bandwidth table, ratios, targets, values, compile times."""
    stats, gbs = record["times_us"], record["bandwidth_GBps"]
    moved, copy = record["config"]["bytes_moved"], record["bandwidth_GBps"][COPY]
    rows = [[k, s["median_us"], s["iqr_us"], moved[k] / 1e6, gbs[k], gbs[k] / copy]
            for k, s in stats.items()]
    cfg, agree = record["config"], record["agreement"]
    lines = gpu.header(record, f"{cfg['chain']}: forward and gradient map over "
                               f"{cfg['elements']:,} float32 elements")
    lines += [harness.table(rows, ["contender", "median µs", "IQR µs", "MB moved", "GB/s",
                                   "/ copy"]),
              "ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in record["ratios"].items()),
              gpu.targets_table(record["targets"]),
              "values: error / max|float64| per contender "
              + ", ".join(f"{k} {v:.1e}" for k, v in agree["error_vs_float64"].items())
              + f"; graphc agrees (<= {agree['tolerance']:.0e}): {agree['agree']}"]
    comp = record["compile"]
    lines.append(f"graphc compile (fwd and bwd, cold cache): {comp['graphc_fwd_and_bwd_s']:.2f} s; "
                 "first calls (Triton JIT): " + ", ".join(
                     f"{k} {v:.2f} s" for k, v in comp["graphc_first_call_s"].items()))
    if comp["torch_compile_first_call_s"]:
        lines.append("torch.compile first calls: " + ", ".join(
            f"{k} {v:.1f} s" for k, v in comp["torch_compile_first_call_s"].items()))
    return "\n".join(lines + gpu.compile_skipped(comp))


def parse_args(argv=None):
    p = gpu.parser(__doc__, rounds=30, reps=20, warmup=5)
    p.add_argument("--log2-elements", type=int, default=None, help="default 26; 11 with --smoke")
    args = p.parse_args(argv)
    if args.log2_elements is None:
        args.log2_elements = 11 if args.smoke else 26
    return gpu.finish_args(args)


def main(argv=None) -> dict:
    return gpu.main(NAME, parse_args, run, report, argv)


if __name__ == "__main__":
    main()
