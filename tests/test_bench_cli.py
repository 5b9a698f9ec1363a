"""`graphc bench`: a quick run through the command writes a JSON record with positive
timings and ratios and a valid PNG, graphc's C and NumPy rows side by side (C the reference
where it is available, its rows skipped with the reason where not), every contender's
thread settings, and torch eager's calibrated thread count; unknown workloads are refused;
a workload whose graphc values disagree with torch stops before timing. No test depends on
which contender is faster."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from graphc import cli
from graphc.bench import BenchConfig, Device, MismatchError, memory, report, run, runner, workloads
from graphc.bench.base import graphc_name
from graphc.codegen.c import build as c_build

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
C_OK = c_build.available()[0]
HOST = ["graphc C", "graphc NumPy"] if C_OK else ["graphc NumPy"]   # the reference first


def graphc_cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, "-m", "graphc", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    out, png = folder / "bench.json", folder / "bench.png"
    done = graphc_cli("bench", "elementwise", "adam", "--quick", "--json", str(out),
                      "--plot", str(png))
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, json.loads(out.read_text()), png


def test_json_has_each_workload_with_positive_times_and_ratios(quick_run):
    stdout, record, _ = quick_run
    assert list(record["workloads"]) == ["elementwise", "adam"]
    assert record["config"]["backends"] == ["c", "numpy"][-len(HOST):]
    assert record["config"]["reference"] == HOST[0]
    assert f"time / {HOST[0]}" in stdout
    for name, w in record["workloads"].items():
        assert name in stdout
        assert [k for k in w["rows"] if k.startswith("graphc")] == HOST
        assert w["rows"][HOST[0]]["ratio"] == 1.0
        assert all(s["vs"] == HOST[0] for s in w["rows"].values())
        for row, s in w["rows"].items():
            assert s["median_us"] > 0 and s["ratio"] > 0, (name, row)
            assert s["n"] == w["timing"]["rounds"] * w["timing"]["reps"]
        assert list(w["compile"]) == record["config"]["backends"]
        assert all(t["cold_s"] > 0 and t["cached_files_s"] > 0 and t["warm_s"] > 0
                   for t in w["compile"].values())
        assert set(HOST) <= set(w["memory"]["rows"]), w["memory"]
        assert all(w["memory"]["rows"][k]["arena_bytes"] > 0 for k in HOST)
    env = record["environment"]
    assert env["device"] == "cpu" and env["numpy"] == np.__version__ and env["date"]
    assert "C compiler included" in stdout if C_OK else "C backend is unavailable" in stdout
    assert "resident memory" in stdout and "arena" in stdout   # the footnote: the method


def test_elementwise_bandwidth_is_relative_to_a_copy(quick_run):
    rows = quick_run[1]["workloads"]["elementwise"]["rows"]
    copy = rows["NumPy copy (same size)"]
    assert copy["of_copy_bandwidth"] == pytest.approx(1.0)
    for row in [*HOST, "torch eager"]:
        assert rows[row]["GBps"] > 0
        assert rows[row]["of_copy_bandwidth"] == pytest.approx(rows[row]["GBps"] / copy["GBps"])


def test_adam_bandwidth_counts_what_adam_moves(quick_run):
    w = quick_run[1]["workloads"]["adam"]
    rows = w["rows"]
    elements = 4 * 8 * 8   # quick: 4 params of 8x8
    copy = rows["NumPy copy (all params' size)"]
    assert copy["GBps"] == pytest.approx(2 * 4 * elements / copy["median_us"] / 1e3)
    for row in [*HOST, "torch.optim.Adam"]:   # params, grads, m, v read; params, m, v written
        assert rows[row]["GBps"] == pytest.approx(7 * 4 * elements / rows[row]["median_us"] / 1e3)
        assert rows[row]["of_copy_bandwidth"] == pytest.approx(rows[row]["GBps"] / copy["GBps"])
    chosen = w["calibration"]["torch.optim.Adam"]["chosen"]   # the fastest of its options
    assert len(w["calibration"]["torch.optim.Adam"]["median_us"]) == 3 * len(
        {1, quick_run[1]["config"]["threads"]["torch_default"]})
    assert rows["torch.optim.Adam"]["settings"].startswith(chosen)
    assert chosen.split(",")[0] in ("foreach=False", "foreach=True", "fused=True")


def test_thread_settings_are_printed_and_recorded(quick_run):
    stdout, record, _ = quick_run
    threads = record["config"]["threads"]
    default = threads["torch_default"]
    assert threads["torch_compile"] == default and threads["numpy_ufuncs"] == 1
    assert threads["blas"] == "unknown" or all(b["threads"] >= 1 for b in threads["blas"])
    assert ("graphc_c" in threads) == C_OK
    assert "threads: torch eager" in stdout and "torch.compile" in stdout
    if C_OK:
        assert f"graphc C {threads['graphc_c']} thread" in stdout
    eager = record["workloads"]["elementwise"]
    calibration = eager["calibration"]["torch eager"]
    assert set(calibration["median_us"]) == {f"{n} thread" + ("s" if n > 1 else "")
                                             for n in {1, default}}
    row = eager["rows"]["torch eager"]
    assert row["torch_threads"] in {1, default}
    assert calibration["chosen"].startswith(f"{row['torch_threads']} thread")
    assert "calibration of torch eager" in stdout
    for s in eager["rows"].values():
        assert s["settings"], s   # every contender says how many threads it ran on


def test_torch_compile_skip_is_said(quick_run):
    stdout, record, _ = quick_run
    assert record["config"]["torch_compile"] is False
    assert "torch.compile skipped" in stdout


def test_plot_is_a_png(quick_run):
    png = quick_run[2]
    assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size > 1000


def test_unknown_workload_is_an_error_naming_the_choices():
    done = graphc_cli("bench", "elementwise", "convnet", "--quick")
    assert done.returncode == 2
    assert "unknown workload 'convnet'" in done.stderr and "softmax_ce" in done.stderr


def test_triton_backend_without_gpu_times_only_with_quick(capsys):
    from graphc import triton_runtime
    if triton_runtime.available():
        pytest.skip("a CUDA GPU is here")
    assert cli.main(["bench", "adam", "--backend", "triton"]) == 2
    err = capsys.readouterr().err
    assert "CUDA GPU" in err and "--quick" in err


def test_large_workloads_are_left_out_of_a_default_cpu_run_but_run_when_named():
    record = run(BenchConfig(["mlp_large", "elementwise_dram"], "default", named=False))
    assert record["workloads"] == {}
    assert all("name it" in record["skipped"][k] for k in ("mlp_large", "elementwise_dram"))
    w = run(BenchConfig(["mlp_large"], "quick"))["workloads"]["mlp_large"]
    assert set(w["rows"]) == {*HOST, "torch eager"}   # three layers: no NumPy by hand
    assert "16-32-32-10" in w["detail"]


def test_elementwise_dram_is_the_chain_at_2_to_the_24():
    w = workloads.WORKLOADS["elementwise_dram"]("default", False, Device())
    assert "16,777,216 float32" in w.detail
    assert w.timing is not None and w.timing[0] * w.timing[1] < 15 * 10   # fewer calls
    record = run(BenchConfig(["elementwise_dram"], "quick"))
    rows = record["workloads"]["elementwise_dram"]["rows"]
    assert rows["NumPy copy (same size)"]["of_copy_bandwidth"] == pytest.approx(1.0)
    assert all(rows[k]["GBps"] > 0 for k in HOST)


def test_without_the_c_backend_its_rows_are_skipped_with_the_reason(monkeypatch):
    monkeypatch.setattr(runner.c_build, "available", lambda: (False, "no compiler on Mars"))
    record = run(BenchConfig(["softmax_ce"], "quick"))
    assert record["config"]["backends"] == ["numpy"]
    assert record["config"]["reference"] == "graphc NumPy"
    assert "no compiler on Mars" in record["skipped"]["graphc C"]
    w = record["workloads"]["softmax_ce"]
    assert set(w["rows"]) == {"graphc NumPy", "torch eager"}
    assert w["rows"]["graphc NumPy"]["ratio"] == 1.0
    text = report(record)
    assert "graphc C rows skipped" in text and "no compiler on Mars" in text
    assert "time / graphc NumPy" in text and "C backend is unavailable" in text


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_one_host_backend_alone(backend):
    if backend == "c" and not C_OK:
        pytest.skip("no working C compiler here")
    w = run(BenchConfig(["softmax_ce"], "quick", device=Device((backend,))))["workloads"]
    assert set(w["softmax_ce"]["rows"]) == {graphc_name(backend), "torch eager"}


def test_torch_threads_pinned_skip_the_calibration():
    record = run(BenchConfig(["softmax_ce"], "quick", torch_threads=1))
    assert record["config"]["threads"]["torch_eager"] == 1
    w = record["workloads"]["softmax_ce"]
    assert w["calibration"] == {} and w["rows"]["torch eager"]["torch_threads"] == 1


def test_every_workload_runs_on_the_triton_interpreter(tmp_path):
    """The GPU path of graphc bench (device tensors, the generated `run` called directly,
    batch timing) on tiny sizes under the interpreter: values agree with torch, every row
    is timed. The times themselves say nothing (the report says so)."""
    out = tmp_path / "triton.json"
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-m", "graphc", "bench", "--backend", "triton",
                           "--quick", "--json", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["config"]["backends"] == ["triton"]
    assert record["environment"]["device"] == "cpu"
    assert record["environment"]["triton_interpret"] is True
    assert list(record["workloads"]) == list(workloads.NAMES)
    for name, w in record["workloads"].items():
        assert all(s["median_us"] > 0 for s in w["rows"].values()), name
    assert "torch copy (same size)" in record["workloads"]["elementwise"]["rows"]
    for mlp in ("mlp_small", "mlp_large"):   # both matmul paths, losses checked against eager
        assert "graphc Triton matmul='fused'" in record["workloads"][mlp]["rows"]
    assert "interpreter" in done.stdout and "say nothing" in done.stdout


def test_mlp_small_in_process_matches_the_hand_written_steps():
    w = run(BenchConfig(["mlp_small"], "quick"))["workloads"]["mlp_small"]
    assert set(w["rows"]) == {*HOST, "NumPy by hand", "torch eager"}
    assert all(s["median_us"] > 0 for s in w["rows"].values())
    memory = w["memory"]["rows"]
    assert set(memory) == set(w["rows"]) and all(memory[k]["arena_bytes"] > 0 for k in HOST)


def test_values_that_disagree_stop_the_run():
    with pytest.raises(MismatchError, match="disagree"):
        workloads.check_close("demo", np.ones(3), np.ones(3) * 1.01)
    with pytest.raises(MismatchError, match="shape"):
        workloads.check_close("demo", np.ones(3), np.ones(4))


@pytest.mark.skipif(not memory.available()[0], reason="needs Linux's resettable peak RSS")
def test_the_memory_method_sees_every_allocator():
    """graphc.bench.memory's measure, in its own process settings, against known sizes: a
    64 MiB NumPy array and a 64 MiB torch tensor made and freed in one call read as 64 MiB
    (within 10%), again on a second call (freed blocks are returned, not kept), and a call
    that allocates nothing reads under the resolution."""
    script = textwrap.dedent("""
        import json, numpy as np, torch
        from graphc.bench.memory import call_bytes
        n = 1 << 24
        print(json.dumps([call_bytes(lambda: np.ones(n, np.float32).sum()),
                          call_bytes(lambda: torch.ones(n).sum()),
                          call_bytes(lambda: np.ones(n, np.float32).sum()),
                          call_bytes(lambda: None)]))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, **memory.CHILD_ENV}, timeout=120)
    assert done.returncode == 0, done.stderr
    np_bytes, torch_bytes, again, nothing = json.loads(done.stdout)
    for b in (np_bytes, torch_bytes, again):
        assert abs(b - 64 * 2**20) < 0.1 * 64 * 2**20, b
    assert nothing < memory.RESOLUTION
