"""The GPU benchmarks keep working without a GPU: each script's --smoke mode runs at tiny
sizes on the CPU (Triton interpreter) in its own process (it sets TRITON_INTERPRET and
cache folders for itself), prints its tables, and writes a JSON record whose values agree
with PyTorch and whose targets are left unjudged. On a GPU the same smoke runs use CUDA."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from graphc.bench import gpu, gpu_mlp_step, gpu_softmax_ce

ROOT = Path(__file__).resolve().parents[1]
# torch.compile with its 'eager' backend checks the dynamo tracing of the compiled
# contenders in a few seconds (Inductor on a CPU takes minutes; the GPU run uses it)
SMOKE = {"elementwise": ["gpu_elementwise", "--torch-compile", "--compile-backend", "eager"],
         "softmax_ce": ["gpu_softmax_ce"],
         "mlp_step": ["gpu_mlp_step", "--torch-compile", "--compile-backend", "eager"]}


def launch(name: str, folder: Path, extra: list) -> tuple:
    module, *flags = SMOKE[name]
    path = folder / f"{name}.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.Popen([sys.executable, "-m", f"graphc.bench.{module}", "--smoke",
                             *flags, *extra, "--out", str(path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, path


def finish(runs: dict) -> dict:
    """name -> (stdout, record) once every process has ended; a failure shows stderr."""
    out = {}
    for name, (proc, path) in runs.items():
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name} failed:\n{stderr[-3000:]}"
        out[name] = stdout, json.loads(path.read_text())
    return out


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The three smoke runs, started together (most of each is importing torch)."""
    folder = tmp_path_factory.mktemp("bench")
    return finish({name: launch(name, folder, []) for name in SMOKE})


def check_common(stdout: str, record: dict, contenders: list) -> None:
    """Rows, the smoke banner, unjudged targets, agreement, environment."""
    assert list(record["times_us"]) == contenders
    for row in contenders:
        assert row in stdout
        stats = record["times_us"][row]
        assert stats["n"] == record["config"]["rounds"] and stats["median_us"] > 0
    assert record["smoke"] is True and "SMOKE RUN" in stdout
    assert record["targets"] and all(t["met"] is None for t in record["targets"])
    assert "not judged" in stdout
    assert record["agreement"]["agree"] is True
    env = record["environment"]
    assert env["device"] == "cpu" and env["triton_interpret"] is True


def test_elementwise_smoke(smoke):
    stdout, record = smoke["elementwise"]
    check_common(stdout, record, ["copy_ (device to device)", "graphc fwd", "eager fwd",
                                  "graphc bwd", "eager bwd", "torch.compile fwd",
                                  "torch.compile bwd"])
    # the point of the benchmark: the forward and the gradient map are one kernel each
    kernels = record["graphc_kernels"]
    assert [kind for _, kind in kernels["fwd"]] == [kind for _, kind in kernels["bwd"]] \
        == ["elementwise"]
    errors = record["agreement"]["error_vs_float64"]
    assert errors["graphc fwd"] < 1e-5 and errors["graphc bwd"] < 1e-5
    assert errors["torch.compile bwd"] < 1e-5   # the compiled vjp computes the same map
    n = record["config"]["elements"]
    assert record["config"]["bytes_moved"]["graphc bwd"] == 12 * n
    assert record["compile"]["torch_compile_skipped"] is None


def test_softmax_ce_smoke(smoke):
    stdout, record = smoke["softmax_ce"]
    check_common(stdout, record, ["graphc", "PyTorch eager"])
    assert "torch.compile skipped: --smoke" in stdout
    assert [kind for _, kind in record["graphc_kernels"]][0] == "rows"
    errors = record["agreement"]["error_vs_float64"]["graphc"]
    assert errors["loss"] < 1e-5 and errors["dz"] < 1e-5
    losses = record["agreement"]["loss"]
    assert losses["graphc"] == pytest.approx(losses["PyTorch eager"], rel=1e-5)


def test_mlp_step_smoke(smoke):
    stdout, record = smoke["mlp_step"]
    graphc, fused, eager = gpu_mlp_step.GRAPHC, gpu_mlp_step.FUSED, gpu_mlp_step.EAGER
    check_common(stdout, record, [graphc, fused, eager, "torch.compile"])
    losses = record["agreement"]["losses"]
    assert len(losses[graphc]) == gpu_mlp_step.CHECKED_STEPS
    np_losses = [losses[k] for k in (graphc, eager, "torch.compile", fused)]
    for a, b, c in zip(np_losses[0], np_losses[1], np_losses[3]):
        assert a == pytest.approx(b, rel=1e-4) and c == pytest.approx(b, rel=1e-4)
    kinds = [kind for _, kind in record["graphc_fused_kernels"]]
    assert kinds.count("matmul") == 8   # every matmul of the step, epilogue inside
    choice = record["matmul_choice"]   # the faster path is the one with the smaller median
    times = record["times_us"]
    faster = "fused" if times[fused]["median_us"] < times[graphc]["median_us"] else "library"
    assert choice["faster"] == faster
    assert choice["library time / fused time"] == pytest.approx(
        times[graphc]["median_us"] / times[fused]["median_us"])
    assert len(set(np_losses[1])) > 1   # training moved: the steps are not all the same
    comp = record["compile"]
    assert comp["graphc_compile_cold_s"] > 0
    assert set(comp["graphc_compile_stages_s"]) >= {"autodiff", "optimize", "generate"}
    assert "torch_compile_first_call_s" in comp and "Triton JIT" in stdout
    assert record["config"]["sizes"] == [16, 32, 32, 10]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
@pytest.mark.parametrize("argv, words", [([], "no CUDA GPU here"),
                                         (["--device", "cpu"], "full sizes need a CUDA GPU")])
def test_full_sizes_without_gpu_exit_clearly(argv, words):
    before = dict(os.environ)
    with pytest.raises(SystemExit, match=words) as e:
        gpu_softmax_ce.main(argv)
    assert "--smoke" in str(e.value)
    assert dict(os.environ) == before   # refused before touching caches or TRITON_INTERPRET


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_smoke_sizes_on_gpu(tmp_path):
    """Real kernels at tiny sizes: the scripts run on CUDA and agree with PyTorch."""
    out = finish({name: launch(name, tmp_path, ["--device", "cuda", "--no-torch-compile"])
                  for name in SMOKE})
    for name, (_, record) in out.items():
        assert record["environment"]["device"] == "cuda", name
        assert record["agreement"]["agree"] is True, name


def test_a_failing_torch_compile_is_skipped_with_its_reason():
    def broken():
        raise RuntimeError("inductor failed\nlong traceback")
    fns = {"graphc": lambda: 1, "torch.compile": broken}
    outs, seconds, skipped = gpu.first_calls(fns, "cpu", optional=("torch.compile",))
    assert outs == {"graphc": 1} and list(fns) == ["graphc"] and set(seconds) == {"graphc"}
    assert skipped == {"torch.compile": "RuntimeError: inductor failed"}
    with pytest.raises(RuntimeError):   # only an optional contender may fail
        gpu.first_calls({"graphc": broken}, "cpu")


def test_targets_are_judged_only_on_a_real_run():
    assert gpu.judge("t", 0.9, ">=", 0.85, smoke=False)["met"] is True
    assert gpu.judge("t", 0.8, ">=", 0.85, smoke=False)["met"] is False
    assert gpu.judge("t", 1.0, ">", 1.0, smoke=False)["met"] is False
    assert gpu.judge("t", 1.2, "<=", 1.1, smoke=False)["met"] is False
    assert gpu.judge("t", 0.9, ">=", 0.85, smoke=True)["met"] is None
    assert gpu.judge("t", None, "<=", 1.1, smoke=False)["met"] is None   # contender skipped


def test_mlp_compile_only_runs_without_a_gpu(tmp_path):
    """--compile-only times graphc's cold compile of both matmul paths on any machine."""
    out = tmp_path / "compile.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-m", "graphc.bench.gpu_mlp_step", "--compile-only",
                           "--sizes", "16,32,10", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(out.read_text())
    assert set(record["compile_cold_s"]) == {"library", "fused"}
    assert all(0 < t < 60 for t in record["compile_cold_s"].values())
    assert record["kernels"]["fused"] < record["kernels"]["library"]
    assert "target < 2 s" in done.stdout


def test_c_threads_benchmark_smoke():
    """graphc/bench/c_threads.py's three parts run, at tiny sizes, on the C backend."""
    from graphc.bench import c_threads
    from tests.backends import C_OK
    if not C_OK:
        pytest.skip("no C backend")
    (n, one, two), = c_threads.crossover([1024], rounds=1, reps=1)
    assert n == 1024 and one > 0 and two > 0
    mixed = c_threads.oversubscription(4, rounds=1, reps=1)
    assert len(mixed) == 6 and all(us > 0 for us in mixed.values())
    assert "graphc C 1 / BLAS 2 (graphc's default here)" in mixed
    rows = c_threads.user_interleaving(1024, rounds=1, reps=1)
    assert [r[:2] for r in rows] == [("graphc chain", "np.matmul 512x512"),
                                     ("graphc chain, 1 thread", "np.matmul 512x512"),
                                     ("graphc chain", "torch matmul 512x512"),
                                     ("torch.tanh 4,096", "np.matmul 512x512")]
    assert all(us > 0 for r in rows for us in r[2:])
