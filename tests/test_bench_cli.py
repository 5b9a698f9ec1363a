"""`graphc bench`: a quick run through the command writes a JSON record with positive
timings and ratios and a valid PNG; unknown workloads are refused; a workload whose
graphc values disagree with torch stops before timing."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from graphc import cli
from graphc.bench import BenchConfig, MismatchError, run, workloads

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
    for name, w in record["workloads"].items():
        assert name in stdout
        assert w["rows"]["graphc"]["ratio"] == 1.0
        assert len(w["rows"]) >= 2            # graphc and at least one other contender
        for row, s in w["rows"].items():
            assert s["median_us"] > 0 and s["ratio"] > 0, (name, row)
            assert s["n"] == record["config"]["timing"]["rounds"] * \
                record["config"]["timing"]["reps"]
        assert w["compile"]["graphc_cold_s"] > 0 and w["compile"]["graphc_warm_s"] > 0
    env = record["environment"]
    assert env["device"] == "cpu" and env["numpy"] == np.__version__ and env["date"]


def test_elementwise_bandwidth_is_relative_to_a_copy(quick_run):
    rows = quick_run[1]["workloads"]["elementwise"]["rows"]
    copy = rows["NumPy copy (same size)"]
    assert copy["of_copy_bandwidth"] == pytest.approx(1.0)
    assert rows["graphc"]["GBps"] > 0
    assert rows["graphc"]["of_copy_bandwidth"] == pytest.approx(
        rows["graphc"]["GBps"] / copy["GBps"])


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


def test_mlp_large_is_left_out_of_a_default_cpu_run_but_runs_when_named():
    record = run(BenchConfig(["mlp_large"], "default", named=False))
    assert record["workloads"] == {} and "name it" in record["skipped"]["mlp_large"]
    w = run(BenchConfig(["mlp_large"], "quick"))["workloads"]["mlp_large"]
    assert set(w["rows"]) == {"graphc", "torch eager"}   # three layers: no NumPy by hand
    assert "16-32-32-10" in w["detail"]


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
    assert record["config"]["backend"] == "triton" and record["environment"]["device"] == "cpu"
    assert record["environment"]["triton_interpret"] is True
    assert list(record["workloads"]) == list(workloads.NAMES)
    for name, w in record["workloads"].items():
        assert all(s["median_us"] > 0 for s in w["rows"].values()), name
    assert "torch copy (same size)" in record["workloads"]["elementwise"]["rows"]
    for mlp in ("mlp_small", "mlp_large"):   # both matmul paths, losses checked against eager
        assert "graphc matmul='fused'" in record["workloads"][mlp]["rows"]
    assert "interpreter" in done.stdout and "say nothing" in done.stdout


def test_mlp_small_in_process_matches_the_hand_written_steps():
    w = run(BenchConfig(["mlp_small"], "quick"))["workloads"]["mlp_small"]
    assert set(w["rows"]) == {"graphc", "NumPy by hand", "torch eager"}
    assert all(s["median_us"] > 0 for s in w["rows"].values())
    assert w["peak_memory_bytes"]["graphc"] > 0


def test_values_that_disagree_stop_the_run():
    with pytest.raises(MismatchError, match="disagree"):
        workloads.check_close("demo", np.ones(3), np.ones(3) * 1.01)
    with pytest.raises(MismatchError, match="shape"):
        workloads.check_close("demo", np.ones(3), np.ones(4))
