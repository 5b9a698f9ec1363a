"""Runs the workloads of `graphc bench`: graphc compiled cold and warm in a fresh cache
folder, values checked, rows timed in interleaved rounds, peak memory of graphc's call;
the record as a table, a JSON-ready dict and a bar chart of time relative to graphc."""
from __future__ import annotations

import tempfile
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

from graphc.render import pyplot, save_figure

from . import harness, workloads

TIMING = {"quick": (3, 2, 1), "default": (15, 10, 5)}   # rounds, reps, warm-up calls


@dataclass
class BenchConfig:
    """What to run: workload names, sizes ('quick' or 'default'), torch.compile or not."""
    names: list
    size: str = "default"
    torch_compile: bool = False
    compile_skip_reason: str | None = "--torch-compile not given (slow to compile on a CPU)"


def compile_cold_and_warm(work: workloads.Workload) -> tuple[dict, object]:
    """graphc's compile with an empty cache folder, then again with its files there."""
    with tempfile.TemporaryDirectory(prefix="graphc-bench-") as cache, \
            harness.env_var("GRAPHC_CACHE_DIR", cache):
        cold_s, compiled = harness.timed(work.compile_graphc)
        warm_s, _ = harness.timed(work.compile_graphc)
    return {"graphc_cold_s": cold_s, "graphc_warm_s": warm_s}, compiled


def peak_memory(row: workloads.Row) -> int:
    """Bytes allocated at the peak of one call, as tracemalloc sees them (NumPy's too)."""
    tracemalloc.start()
    try:
        row.call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run_workload(name: str, cfg: BenchConfig) -> dict:
    """One workload's record: detail, compile times, checked rows timed, ratios, memory."""
    work = workloads.CPU[name](cfg.size, cfg.torch_compile)
    compile_times, compiled = compile_cold_and_warm(work)
    rows = work.rows(compiled)           # checks values against eager torch, or raises
    first = {}
    for row in rows:                     # torch.compile compiles on its first call
        first[row.name], _ = harness.timed(row.call)
    rounds, reps, warmup = TIMING[cfg.size]
    times = harness.interleaved({r.name: r.call for r in rows}, rounds, reps, warmup)
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
            "peak_memory_bytes": {r.name: peak_memory(r) for r in graphc_rows},
            "values_checked": "against eager torch before timing", "notes": work.notes}


def run(cfg: BenchConfig) -> dict:
    """The whole record: environment, settings, each workload's results, what was skipped."""
    env = harness.environment()
    env["device"] = "cpu"
    record: dict = {"environment": env,
                    "config": {"size": cfg.size, "backend": "numpy",
                               "timing": dict(zip(("rounds", "reps", "warmup"),
                                                  TIMING[cfg.size])),
                               "torch_compile": cfg.torch_compile,
                               "torch_compile_skipped": None if cfg.torch_compile
                               else cfg.compile_skip_reason},
                    "workloads": {}, "skipped": {}}
    for name in cfg.names:
        if name in workloads.GPU_ONLY:
            record["skipped"][name] = f"{workloads.GPU_ONLY[name]}: needs a CUDA GPU"
            continue
        record["workloads"][name] = run_workload(name, cfg)
    return record


def report(record: dict) -> str:
    """The terminal summary: one table per workload, then compile times and skips."""
    env, cfg = record["environment"], record["config"]
    lines = [f"graphc bench on {env['cpu']} ({env['cpu_count']} cores), NumPy backend; "
             f"torch {env.get('torch')}; {env['date']}",
             "{rounds} interleaved rounds x {reps} calls after {warmup} warm-up calls; "
             "median and IQR of time per call".format(**cfg["timing"])]
    if cfg["torch_compile_skipped"]:
        lines.append(f"torch.compile skipped: {cfg['torch_compile_skipped']}")
    for name, w in record["workloads"].items():
        rows = [[k, s["median_us"], s["iqr_us"], s["ratio"],
                 _maybe(s, "GBps"), _maybe(s, "of_copy_bandwidth")] for k, s in w["rows"].items()]
        comp = w["compile"]
        memory = ", ".join(f"{k} {v / 2**20:.2f} MiB" for k, v in w["peak_memory_bytes"].items())
        lines += ["", f"{name}: {w['detail']}",
                  harness.table(rows, ["contender", "median µs", "IQR µs", "time / graphc",
                                       "GB/s", "/ copy"]),
                  f"graphc compile: cold {comp['graphc_cold_s'] * 1e3:.0f} ms, warm (cached) "
                  f"{comp['graphc_warm_s'] * 1e3:.0f} ms; peak memory of a call: {memory}",
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
    ax.set_title(f"graphc bench, {record['environment']['cpu']}", fontsize=9)
    return save_figure(fig, path)
