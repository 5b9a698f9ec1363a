"""The examples do what they print: each main() runs with small settings and its claims are
checked (the course's figures, PyTorch, closed forms); the digits step benchmark runs tiny."""
import json

import numpy as np
import pytest

from examples import (
    autoencoder,
    backprop_221,
    char_lm,
    cos_sin,
    digits_mlp,
    digits_regularization,
    encoder_838,
    xor,
)
from graphc.bench import digits_step, harness


def test_xor_hand_set_and_learned(capsys):
    out = xor.main(steps=1000, seed=0)
    np.testing.assert_array_equal(out["hand"]["y"], [0, 1, 1, 0])
    np.testing.assert_array_equal(out["hand"]["h"], [[0, 0], [1, 0], [1, 0], [2, 1]])
    np.testing.assert_array_equal(out["learned"]["rounded"], [0, 1, 1, 0])
    assert np.max(np.abs(out["learned"]["pred"] - [0, 1, 1, 0])) < 0.1
    assert "hand-set ReLU network" in capsys.readouterr().out


@pytest.fixture(scope="module")
def b221():
    return backprop_221.main()


def test_backprop_221_matches_the_slide(b221):
    s = backprop_221.SLIDE
    np.testing.assert_allclose(b221["h"], s["h"], atol=5e-3)        # 0.68 is 0.6803
    assert abs(b221["h"][1] - 0.6637) < 5e-5
    assert abs(b221["y"] - s["y"]) < 5e-3
    # the slide multiplies rounded deltas (0.0027, 0.0082, 0.0406): within 3% of exact
    np.testing.assert_allclose(b221["dW1"], s["dW1"], rtol=0.03)
    np.testing.assert_allclose(b221["dW2"], s["dW2"], rtol=0.03)
    np.testing.assert_allclose(b221["slide_arithmetic"]["dW1"], s["dW1"], atol=5e-6)
    np.testing.assert_allclose(b221["slide_arithmetic"]["dW2"], s["dW2"], atol=5e-5)
    np.testing.assert_allclose(b221["delta1"], s["delta1"], atol=1e-4)
    np.testing.assert_allclose(b221["updated"]["W1"], s["W1_new"], atol=1e-4)
    np.testing.assert_allclose(b221["updated"]["W2"], s["W2_new"], atol=2e-4)


def test_backprop_221_index_convention(b221):
    conv = b221["conventions"]
    assert abs(conv["W1 @ x"][0] - 0.68) < 5e-3
    assert abs(conv["W1^T @ x"][0] - 0.68) > 0.05


def test_backprop_221_equals_torch(b221):
    torch = pytest.importorskip("torch")
    W1 = torch.tensor(backprop_221.W1_INIT, requires_grad=True)
    W2 = torch.tensor(backprop_221.W2_INIT, requires_grad=True)
    x = torch.tensor(backprop_221.X_IN)
    y = torch.sigmoid(W2 @ torch.sigmoid(W1 @ x))
    loss = 0.5 * ((torch.tensor(backprop_221.T) - y) ** 2).sum()
    loss.backward()
    np.testing.assert_allclose(b221["dW1"], W1.grad.numpy(), rtol=1e-12, atol=0)
    np.testing.assert_allclose(b221["dW2"], W2.grad.numpy().ravel(), rtol=1e-12, atol=0)
    np.testing.assert_allclose(b221["updated"]["W1"], (W1 - W1.grad).detach().numpy(),
                               rtol=1e-12)
    assert b221["L"] == pytest.approx(loss.item(), rel=1e-12)


def test_cos_sin_derivative_is_the_closed_form():
    out = cos_sin.main(x=1.0, points=21)
    assert out["dJdx"] == pytest.approx(out["closed_form"], rel=1e-12)
    assert out["max_error"] < 1e-12
    v, a = out["values"], out["adjoints"]
    assert v["J"] == pytest.approx(np.cos(np.sin(1.0) + 3.0), rel=1e-12)
    assert a["u"] == pytest.approx(-np.sin(v["u"]), rel=1e-12)
    assert a["u1"] == a["u2"] == a["u"]                              # d(u1 + u2) = 1
    assert a["t"] == pytest.approx(a["u1"] * np.cos(v["t"]) + 3 * a["u2"], rel=1e-12)
    assert "def run(" in out["source"] and "np.cos" in out["source"]
    if out["backend"] == "c":   # the same derivative as one C function: cos, sin calls
        assert "void fused_" in out["c_source"] and "cos(" in out["c_source"]


def test_encoder_838_finds_eight_codes():
    out = encoder_838.main()
    assert out["identity"]
    assert out["distinct_rounded"] == 8
    assert out["distinct_binary"] == 8


def test_digits_mlp_reaches_95_percent(capsys):
    # the real settings (20 epochs, batch 64): a second or two on a laptop
    out = digits_mlp.main(["--no-bench", "--no-progress"])
    assert out["accuracy"] >= 0.95
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and str(out["step"].path) in printed
    assert out["step"].path.exists()


def test_digits_mlp_bench_smoke():
    pytest.importorskip("torch")
    out = digits_mlp.main(["--epochs", "1", "--no-progress", "--rounds", "2", "--reps", "2"])
    bench = out["bench"]   # graphc bench's mlp_small: losses checked before timing
    assert max(bench["checks"]["max_difference"].values()) < 1e-5   # the steps agree
    graphc_rows = [r for r in ("graphc C", "graphc NumPy") if r in bench["rows"]]
    assert graphc_rows[-1] == "graphc NumPy"
    assert set(bench["rows"]) == {*graphc_rows, "NumPy by hand", "torch eager"}
    assert all(s["n"] == 4 and s["median_us"] > 0 for s in bench["rows"].values())


def test_harness_interleaves_and_summarises():
    calls = []
    times = harness.interleaved({"a": lambda: calls.append("a"),
                                 "b": lambda: calls.append("b")}, rounds=3, reps=2, warmup=1)
    assert {k: len(v) for k, v in times.items()} == {"a": 6, "b": 6}
    assert calls[:2] == ["a", "b"] and calls[2:6] == ["a", "a", "b", "b"]
    assert calls[6:10] == ["b", "b", "a", "a"]                      # order rotates
    s = harness.summary(np.array([1.0, 2.0, 3.0, 4.0, 5.0]) * 1e-6)
    assert s["median_us"] == pytest.approx(3.0) and s["iqr_us"] == pytest.approx(2.0)
    assert "median" in harness.table([["x", 1.5, 2.0]], ["name", "median", "ratio"])
    first = harness.FirstCall(lambda v: v + 1)
    assert first(1) == 2 and first.seconds is not None and first(2) == 3
    assert harness.cpu_label().endswith("cores") and harness.environment()["numpy"]


def test_digits_step_smoke(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "bench.json"
    record = digits_step.main(["--rounds", "2", "--reps", "2", "--warmup", "1",
                               "--no-torch-compile", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert list(saved["workloads"]) == [digits_step.WORKLOAD]
    w = saved["workloads"][digits_step.WORKLOAD]
    assert w["timing"] == {"rounds": 2, "reps": 2, "warmup": 1}
    assert {"NumPy by hand", "torch eager", "graphc NumPy"} <= set(w["rows"])
    assert all(t["cold_s"] > 0 for t in w["compile"].values())
    assert saved["config"]["torch_compile_skipped"] == "--no-torch-compile"
    checks = record["workloads"][digits_step.WORKLOAD]["checks"]
    assert max(checks["max_difference"].values()) < 1e-5
    assert "same losses over 3 steps" in capsys.readouterr().out
    for key in ("python", "numpy", "torch", "sympy", "cpu", "date"):
        assert saved["environment"][key]


def test_denoising_autoencoder_cleans_noisy_digits_better(tmp_path):
    out = autoencoder.main(["--no-progress", "--out", str(tmp_path)])
    plain, denoising = out["errors"]["autoencoder"], out["errors"]["denoising autoencoder"]
    # both learned to reconstruct: far below the noise they are shown
    assert plain["clean"] < 0.2 * out["noisy_input_mse"]
    assert denoising["noisy"] < 0.3 * out["noisy_input_mse"]
    # trained on corrupted inputs, it is closer to the clean digit than the plain one
    assert denoising["noisy"] < 0.97 * plain["noisy"]
    assert out["image"].stat().st_size > 10_000


def test_regularised_digits_report_each_accuracy(capsys):
    out = digits_regularization.main(["--no-progress", "--epochs", "30"])
    assert list(out) == ["none", "dropout p=0.5", "L2 0.01", "dropout + L2"]
    for r in out.values():
        assert r["test"] > 0.85 and r["train"] >= r["test"] - 0.02
    # the penalty is in the loss: the penalised weights end up much smaller
    assert out["L2 0.01"]["weight_norm"] < 0.7 * out["none"]["weight_norm"]
    assert "dropout + L2" in capsys.readouterr().out


def test_char_lm_beats_the_unigram_entropy_with_each_cell(tmp_path):
    out = char_lm.main(["--steps", "150", "--hidden", "64", "--out", str(tmp_path)])
    assert out["image"].stat().st_size > 10_000
    h1 = out["unigram_entropy"]
    assert 2.5 < h1 < 3.5            # English letters and punctuation, in nats
    for cell, r in out["models"].items():
        assert r["train_loss"] < 0.8 * r["first_loss"], cell
        # on text it never trained on, context helps: below what frequencies alone give
        assert r["held_out_loss"] < h1 - 0.3, (cell, r["held_out_loss"], h1)
        assert r["sample"].startswith("We hold ") and len(r["sample"]) == 8 + 160
