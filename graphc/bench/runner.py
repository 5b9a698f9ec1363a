"""Runs the workloads of `graphc bench`: graphc compiled cold and warm in a fresh cache
folder for each backend timed (C and NumPy on the CPU), values checked, torch eager's thread
count (and a contender's option, e.g. Adam's fused) calibrated, rows timed in interleaved
rounds (each call on the host; batches between CUDA events on a GPU), memory of a call
and graphc's arena (graphc.bench.memory); the record as a table, a JSON-ready dict and a
bar chart of time relative to the reference graphc row (graphc C where it is available)."""
from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

from graphc import lowering_memo
from graphc.codegen.c import build as c_build
from graphc.render import pyplot, save_figure

from . import device as devices, harness, memory, threads, workloads
from .base import LABELS, graphc_name
from .device import Device

TIMING = {"quick": (3, 2, 1), "default": (15, 10, 5)}   # rounds, reps, warm-up calls
# left out of a run that names no workloads, and why; named, they run
NOT_BY_DEFAULT = {"mlp_large": "about half a TFLOP a step, seconds on a CPU: name it to run it",
                  "elementwise_dram": "2^24 float32, 256 MiB moved a call: its run takes "
                                      "about 45 s on a 2-core CPU; name it to run it"}
NOT_BY_DEFAULT_GPU = {"elementwise_dram": "on a GPU elementwise is 2^26 float32, DRAM-sized "
                                          "already: name it to run it",
                      "softmax_ce_large": "on a GPU softmax_ce is 32768x1024 already: name "
                                          "it to run it"}
MEMORY_NOTE = ("memory: 'in a call' is " + memory.METHOD_HOST + " (graphc.bench.memory; "
               "Linux counts resident pages in batches of 64, so smaller figures read as 'under "
               "256 KiB'); "
               "graphc's 'arena' is the buffers its memory plan allocates once per batch "
               "size and holds between calls. torch.compile is not measured")


@dataclass
class BenchConfig:
    """What to run: workload names, sizes ('quick' or 'default'), torch.compile or not,
    where (graphc's C and NumPy backends on the host, or Triton on a GPU or under its
    interpreter), and torch's threads (None: eager calibrated, compile at the default)."""
    names: list
    size: str = "default"
    torch_compile: bool = False
    compile_skip_reason: str | None = "--torch-compile not given (slow to compile on a CPU)"
    device: Device = Device()
    named: bool = True   # the user named these workloads (else: the default list)
    torch_threads: int | None = None
    timing: tuple | None = None   # (rounds, reps, warm-up) for every workload, if given


def available_backends(dev: Device) -> tuple[Device, dict]:
    """The device with the backends that work here, and why any other is left out."""
    skipped = {}
    if "c" in dev.backends:
        ok, why = c_build.available()
        if not ok:
            skipped[graphc_name("c")] = f"rows skipped: the C backend is unavailable ({why})"
    kept = tuple(b for b in dev.backends if graphc_name(b) not in skipped)
    return replace(dev, backends=kept), skipped


def compile_cold_and_warm(work: workloads.Workload, backends: tuple) -> tuple[dict, dict]:
    """graphc's compile for each backend with an empty cache folder (for C: the compiler
    runs), then again with its files there: as a new process would (the passes and
    printers run, the cached files are found) and as this process does (the lowering
    reused too). ({backend: times}, {backend: compiled})."""
    times, out = {}, {}
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix="graphc-bench-") as cache, \
                harness.env_var("GRAPHC_CACHE_DIR", cache):
            with lowering_memo.off():
                cold_s, out[backend] = harness.timed(lambda: work.compile_graphc(backend))
                files_s, _ = harness.timed(lambda: work.compile_graphc(backend))
            work.compile_graphc(backend)   # into the memo
            warm_s, _ = harness.timed(lambda: work.compile_graphc(backend))
        times[backend] = {"cold_s": cold_s, "cached_files_s": files_s, "warm_s": warm_s}
    return times, out


def run_workload(name: str, cfg: BenchConfig, settings: dict) -> dict:
    """One workload's record: detail, compile times, checked rows timed, ratios, memory."""
    dev = cfg.device
    work = workloads.WORKLOADS[name](cfg.size, cfg.torch_compile, dev)
    compile_times, compiled = compile_cold_and_warm(work, dev.backends)
    rows = work.rows(compiled)           # checks values against eager torch, or raises
    timing = cfg.timing or work.timing or TIMING[cfg.size]
    threads.label(rows, settings, work.matmuls, dev.host)
    calibration = threads.calibrate(rows, dev, timing, settings)
    setup = harness.setups([r.name for r in rows], threads.before(rows))
    first = dict(work.first_calls)       # made by the value check, where it times them
    for row in rows:                     # else torch.compile compiles (Triton JITs) here
        if row.name not in first:
            setup[row.name]()
            first[row.name], _ = devices.first_call(row.call, dev.name)
    rounds, reps, warmup = timing
    times = dev.interleaved({r.name: r.call for r in rows}, rounds, reps, warmup, before=setup)
    stats = {k: harness.summary(t) for k, t in times.items()}
    for r in rows:
        s = stats[r.name]
        s.update(vs=r.vs, ratio=s["median_us"] / stats[r.vs]["median_us"],
                 first_call_s=first[r.name], backend=r.backend, settings=r.settings,
                 torch_threads=r.torch_threads)
        if r.bytes_moved:
            s["GBps"] = r.bytes_moved / s["median_us"] / 1e3
    copy = next((stats[r.name]["GBps"] for r in rows if r.copy), None)
    for s in stats.values():
        if copy and "GBps" in s:
            s["of_copy_bandwidth"] = s["GBps"] / copy
    return {"detail": work.detail, "compile": compile_times, "rows": stats,
            "calibration": calibration,
            "memory": memory.measure(name, cfg.size, dev, rows),
            "timing": dict(zip(("rounds", "reps", "warmup"), timing)),
            "values_checked": "against eager torch before timing", "checks": work.checks,
            "skipped": work.skipped, "notes": work.notes}


def run(cfg: BenchConfig) -> dict:
    """The whole record: environment, settings, each workload's results, what was skipped."""
    dev, skipped = available_backends(cfg.device)
    if not dev.backends:
        raise ValueError("no graphc backend to time: " + "; ".join(skipped.values()))
    cfg = replace(cfg, device=dev)
    env = harness.environment() if dev.host else devices.environment(dev.name)
    env["device"] = dev.name
    settings = threads.settings(list(dev.backends), cfg.torch_threads)
    record: dict = {"environment": env,
                    "config": {"size": cfg.size, "backends": list(dev.backends),
                               "reference": graphc_name(dev.backends[0]),
                               "timing": dict(zip(("rounds", "reps", "warmup"),
                                                  cfg.timing or TIMING[cfg.size])),
                               "threads": settings,
                               "torch_compile": cfg.torch_compile,
                               "torch_compile_skipped": None if cfg.torch_compile
                               else cfg.compile_skip_reason},
                    "workloads": {}, "skipped": skipped}
    if dev.interpreter:
        record["notes"] = ["Triton interpreter on the CPU: a check that every workload runs "
                           "and agrees with torch; its times say nothing about a GPU"]
    with warnings.catch_warnings():
        if dev.interpreter:   # said once in the record's notes, not at every compile
            warnings.filterwarnings("ignore", message="Triton interpreter")
        try:
            _run_all(cfg, record, settings)
        finally:   # the calibration and the rows leave torch's threads where they ran
            threads.set_torch(settings["torch_default"])()
    return record


def _run_all(cfg: BenchConfig, record: dict, settings: dict) -> None:
    dev = cfg.device
    for name in cfg.names:
        full_size_on_cpu = dev.name != "cuda" and cfg.size != "quick"
        left_out = NOT_BY_DEFAULT if full_size_on_cpu else \
            NOT_BY_DEFAULT_GPU if dev.name == "cuda" else {}
        if not cfg.named and name in left_out:
            record["skipped"][name] = left_out[name]
            continue
        record["workloads"][name] = run_workload(name, cfg, settings)


def where(record: dict) -> str:
    """The machine and backends a record was measured on, for its report and chart."""
    env, backends = record["environment"], record["config"]["backends"]
    if "triton" not in backends:
        names = " and ".join(LABELS[b] for b in backends)
        isa = f", {env['cpu_isa']}" if env.get("cpu_isa") else ""
        return f"{env['cpu']} ({env['cpu_count']} cores{isa}), graphc's {names} " + \
            ("backends" if len(backends) > 1 else "backend")
    if env["device"] == "cuda":
        return f"{env['gpu']}, Triton backend (CUDA {env['cuda']}, triton {env['triton']})"
    return f"{env['cpu']}, Triton backend under its interpreter (triton {env['triton']})"


def report(record: dict) -> str:
    """The terminal summary: the settings, one table per workload, then compile times,
    first calls, calibrations, memory and skips."""
    env, cfg = record["environment"], record["config"]
    host = "triton" not in cfg["backends"]
    unit = "calls" if host else ("batches of calls between CUDA events"
                                 if env["device"] == "cuda" else "batches of calls")
    ref = cfg["reference"]
    lines = [f"graphc bench on {where(record)}; torch {env.get('torch')}; {env['date']}",
             *record.get("notes", []),
             "{rounds} interleaved rounds x {reps} {unit} after {warmup} warm-up calls; "
             "median and IQR of time per call (unless a workload's notes say otherwise)"
             .format(unit=unit, **cfg["timing"]),
             f"time / {ref}: each row's median over the {ref} row of its workload (or of "
             "its group: lstm's cell, T=...)" + _why_reference(cfg, record),
             threads.describe(cfg["threads"], host)]
    if cfg["torch_compile_skipped"]:
        lines.append(f"torch.compile skipped: {cfg['torch_compile_skipped']}")
    lines += [f"{k} {why}" for k, why in record["skipped"].items() if k.startswith("graphc")]
    for name, w in record["workloads"].items():
        lines += ["", f"{name}: {w['detail']}", _table(w, ref), *_details(w, host), *w["notes"]]
    lines += [f"skipped {k}: {why}" for k, why in record["skipped"].items()
              if not k.startswith("graphc")]
    if host and record["workloads"]:
        lines += ["", MEMORY_NOTE]
    return "\n".join(lines)


def _why_reference(cfg: dict, record: dict) -> str:
    if cfg["backends"][0] == "c":
        return " (graphc C: the C backend is available here)"
    if "graphc C" in record["skipped"]:
        return " (graphc NumPy: the C backend is unavailable here)"
    return ""


def _table(w: dict, ref: str) -> str:
    rows = [[k, s["median_us"], s["iqr_us"], s["ratio"], _maybe(s, "GBps"),
             _maybe(s, "of_copy_bandwidth"), s.get("settings") or "-"]
            for k, s in w["rows"].items()]
    return harness.table(rows, ["contender", "median µs", "IQR µs", f"time / {ref}", "GB/s",
                                "/ copy", "settings"], text=(0, -1))


def _details(w: dict, host: bool) -> list:
    """The lines under a workload's table: compile, first calls, calibration, memory."""
    comp = ", ".join(f"{LABELS[b]} cold {t['cold_s'] * 1e3:.0f} ms"
                     + (" (C compiler included)" if b == "c" else "")
                     + f", files cached (lowered again) {t['cached_files_s'] * 1e3:.0f} ms"
                     + f", warm {t['warm_s'] * 1e3:.0f} ms" for b, t in w["compile"].items())
    jit = "" if host else " (Triton JIT-compiles here)"
    first = ", ".join(f"{k} {s['first_call_s'] * 1e3:.0f} ms" for k, s in w["rows"].items()
                      if s["backend"] or k.startswith("torch.compile"))
    out = [f"graphc compile (empty cache folder, then files cached; warm: lowering reused "
           f"too): {comp}",
           f"first call{jit}: {first}"]
    for row, c in w["calibration"].items():
        tried = ", ".join(f"{k} {us:.1f}" for k, us in c["median_us"].items())
        out.append(f"calibration of {row} (median µs): {tried} -> {c['chosen']}")
    out.append(_memory_line(w["memory"], host))
    checks = w.get("checks") or {}
    if checks.get("max_difference"):
        steps = len(checks["losses"][checks["max_difference_to"]])
        out.append(f"same losses over {steps} steps, max |difference| to "
                   f"{checks['max_difference_to']}: " + ", ".join(
                       f"{k} {v:.1e}" for k, v in checks["max_difference"].items()))
    return out


def _memory_line(m: dict, host: bool) -> str:
    if m.get("skipped"):
        return f"memory not measured: {m['skipped']}"
    floor = m.get("resolution_bytes", 0)

    def in_call(b: int) -> str:
        return f"under {_size(floor)}" if b < floor else _size(b)
    parts = [f"{k} " + (f"arena {_size(f['arena_bytes'])} + " if "arena_bytes" in f else "")
             + f"{in_call(f['call_bytes'])} in a call" for k, f in m["rows"].items()]
    how = " (see the footnote)" if host else f" ({m['method']})"
    return f"memory{how}: " + ", ".join(parts)


def _size(b: float) -> str:
    return f"{b / 2**20:.1f} MiB" if b >= 2**20 else f"{b / 2**10:.0f} KiB"


def _maybe(stats: dict, key: str):
    return stats[key] if key in stats else "-"


def plot(record: dict, path: Path) -> Path:
    """A horizontal bar per contender: median time relative to its graphc reference row
    (log scale); graphc's rows in blue."""
    plt = pyplot()
    labels, ratios, colors = [], [], []
    for name, w in record["workloads"].items():
        for row, s in w["rows"].items():
            labels.append(f"{name}: {row}")
            ratios.append(s["ratio"])
            colors.append("C0" if s.get("backend") else "C1")
    fig, ax = plt.subplots(figsize=(7.5, 0.3 * len(labels) + 1.2))
    ax.barh(range(len(labels)), ratios, color=colors)
    ax.axvline(1.0, color="k", linewidth=0.8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(f"median time / {record['config']['reference']}'s (lower is faster)")
    ax.set_title(f"graphc bench, {where(record)}", fontsize=9)
    return save_figure(fig, path)
