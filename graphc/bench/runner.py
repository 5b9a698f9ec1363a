"""Runs the workloads of `graphc bench`: graphc compiled cold and warm in a fresh cache
folder, values checked, rows timed in interleaved rounds (each call on the host; batches
between CUDA events on a GPU), peak memory of graphc's call; the record as a table, a
JSON-ready dict and a bar chart of time relative to graphc."""
from __future__ import annotations

import tempfile
import tracemalloc
import warnings
from dataclasses import dataclass
from pathlib import Path

from graphc.render import pyplot, save_figure

from . import device as devices, harness, workloads
from .device import Device

TIMING = {"quick": (3, 2, 1), "default": (15, 10, 5)}   # rounds, reps, warm-up calls
# left out of a run that names no workloads, and why; named, they run
NOT_BY_DEFAULT = {"mlp_large": "about half a TFLOP a step, seconds on a CPU: name it to run it"}


@dataclass
class BenchConfig:
    """What to run: workload names, sizes ('quick' or 'default'), torch.compile or not,
    and where (NumPy on the host, or Triton on a GPU or under its interpreter)."""
    names: list
    size: str = "default"
    torch_compile: bool = False
    compile_skip_reason: str | None = "--torch-compile not given (slow to compile on a CPU)"
    device: Device = Device()
    named: bool = True   # the user named these workloads (else: the default list)


def compile_cold_and_warm(work: workloads.Workload) -> tuple[dict, object]:
    """graphc's compile with an empty cache folder, then again with its files there."""
    with tempfile.TemporaryDirectory(prefix="graphc-bench-") as cache, \
            harness.env_var("GRAPHC_CACHE_DIR", cache):
        cold_s, compiled = harness.timed(work.compile_graphc)
        warm_s, _ = harness.timed(work.compile_graphc)
    return {"graphc_cold_s": cold_s, "graphc_warm_s": warm_s}, compiled


def peak_memory(row: workloads.Row, dev: Device) -> int:
    """Bytes allocated at the peak of one call: on a GPU, what torch's allocator holds
    at the peak; on the host, what tracemalloc sees (NumPy's arrays too)."""
    if dev.name == "cuda":
        import torch
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        row.call()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated())
    tracemalloc.start()
    try:
        row.call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run_workload(name: str, cfg: BenchConfig) -> dict:
    """One workload's record: detail, compile times, checked rows timed, ratios, memory."""
    dev = cfg.device
    work = workloads.WORKLOADS[name](cfg.size, cfg.torch_compile, dev)
    compile_times, compiled = compile_cold_and_warm(work)
    rows = work.rows(compiled)           # checks values against eager torch, or raises
    first = {}
    for row in rows:                     # torch.compile compiles (and Triton JITs) here
        first[row.name], _ = devices.first_call(row.call, dev.name)
    rounds, reps, warmup = work.timing or TIMING[cfg.size]
    times = dev.interleaved({r.name: r.call for r in rows}, rounds, reps, warmup)
    stats = {k: harness.summary(t) for k, t in times.items()}
    for r in rows:
        stats[r.name].update(vs=r.vs, ratio=stats[r.name]["median_us"]
                             / stats[r.vs]["median_us"], first_call_s=first[r.name])
        if r.name in work.bytes_moved:
            stats[r.name]["GBps"] = work.bytes_moved[r.name] / stats[r.name]["median_us"] / 1e3
    copy = next((s["GBps"] for k, s in stats.items() if "copy" in k), None)
    if copy:
        for s in stats.values():
            if "GBps" in s:
                s["of_copy_bandwidth"] = s["GBps"] / copy
    graphc_rows = [r for r in rows if r.vs == r.name]
    return {"detail": work.detail, "compile": compile_times, "rows": stats,
            "peak_memory_bytes": {r.name: peak_memory(r, dev) for r in graphc_rows},
            "timing": dict(zip(("rounds", "reps", "warmup"), (rounds, reps, warmup))),
            "values_checked": "against eager torch before timing", "notes": work.notes}


def run(cfg: BenchConfig) -> dict:
    """The whole record: environment, settings, each workload's results, what was skipped."""
    dev = cfg.device
    env = harness.environment() if dev.backend == "numpy" else devices.environment(dev.name)
    env["device"] = dev.name
    record: dict = {"environment": env,
                    "config": {"size": cfg.size, "backend": dev.backend,
                               "timing": dict(zip(("rounds", "reps", "warmup"),
                                                  TIMING[cfg.size])),
                               "torch_compile": cfg.torch_compile,
                               "torch_compile_skipped": None if cfg.torch_compile
                               else cfg.compile_skip_reason},
                    "workloads": {}, "skipped": {}}
    if dev.interpreter:
        record["notes"] = ["Triton interpreter on the CPU: a check that every workload runs "
                           "and agrees with torch; its times say nothing about a GPU"]
    with warnings.catch_warnings():
        if dev.interpreter:   # said once in the record's notes, not at every compile
            warnings.filterwarnings("ignore", message="Triton interpreter")
        _run_all(cfg, record)
    return record


def _run_all(cfg: BenchConfig, record: dict) -> None:
    dev = cfg.device
    for name in cfg.names:
        full_size_on_cpu = dev.name != "cuda" and cfg.size != "quick"
        if not cfg.named and full_size_on_cpu and name in NOT_BY_DEFAULT:
            record["skipped"][name] = NOT_BY_DEFAULT[name]
            continue
        record["workloads"][name] = run_workload(name, cfg)


def where(record: dict) -> str:
    """The machine and backend a record was measured on, for its report and chart."""
    env, backend = record["environment"], record["config"]["backend"]
    if backend == "numpy":
        return f"{env['cpu']} ({env['cpu_count']} cores), NumPy backend"
    if env["device"] == "cuda":
        return f"{env['gpu']}, Triton backend (CUDA {env['cuda']}, triton {env['triton']})"
    return f"{env['cpu']}, Triton backend under its interpreter (triton {env['triton']})"


def report(record: dict) -> str:
    """The terminal summary: one table per workload, then compile times and skips."""
    env, cfg = record["environment"], record["config"]
    unit = {"numpy": "calls", "cuda": "batches of calls between CUDA events"}.get(
        cfg["backend"] if cfg["backend"] == "numpy" else env["device"], "batches of calls")
    lines = [f"graphc bench on {where(record)}; torch {env.get('torch')}; {env['date']}",
             *record.get("notes", []),
             "{rounds} interleaved rounds x {reps} {unit} after {warmup} warm-up calls; "
             "median and IQR of time per call (unless a workload's notes say otherwise)"
             .format(unit=unit, **cfg["timing"])]
    if cfg["torch_compile_skipped"]:
        lines.append(f"torch.compile skipped: {cfg['torch_compile_skipped']}")
    for name, w in record["workloads"].items():
        rows = [[k, s["median_us"], s["iqr_us"], s["ratio"],
                 _maybe(s, "GBps"), _maybe(s, "of_copy_bandwidth")] for k, s in w["rows"].items()]
        comp = w["compile"]
        memory = ", ".join(f"{k} {v / 2**20:.2f} MiB" for k, v in w["peak_memory_bytes"].items())
        jit = "" if cfg["backend"] == "numpy" else " (Triton JIT-compiles here)"
        first = ", ".join(f"{k} {s['first_call_s'] * 1e3:.0f} ms" for k, s in w["rows"].items()
                          if s["vs"] == k)
        lines += ["", f"{name}: {w['detail']}",
                  harness.table(rows, ["contender", "median µs", "IQR µs", "time / graphc",
                                       "GB/s", "/ copy"]),
                  f"graphc compile: cold {comp['graphc_cold_s'] * 1e3:.0f} ms, warm (cached) "
                  f"{comp['graphc_warm_s'] * 1e3:.0f} ms; first call{jit}: {first}; "
                  f"peak memory of a call: {memory}",
                  *w["notes"]]
    lines += [f"skipped {k}: {why}" for k, why in record["skipped"].items()]
    return "\n".join(lines)


def _maybe(stats: dict, key: str):
    return stats[key] if key in stats else "-"


def plot(record: dict, path: Path) -> Path:
    """A horizontal bar per contender: median time relative to its graphc row (log scale)."""
    plt = pyplot()
    labels, ratios = [], []
    for name, w in record["workloads"].items():
        for row, s in w["rows"].items():
            labels.append(f"{name}: {row}")
            ratios.append(s["ratio"])
    fig, ax = plt.subplots(figsize=(7.5, 0.3 * len(labels) + 1.2))
    ax.barh(range(len(labels)), ratios, color=["C0" if r == 1 else "C1" for r in ratios])
    ax.axvline(1.0, color="k", linewidth=0.8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("median time / graphc's (lower is faster)")
    ax.set_title(f"graphc bench, {where(record)}", fontsize=9)
    return save_figure(fig, path)
