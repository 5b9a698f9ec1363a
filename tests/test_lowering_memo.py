"""The in-process lowering memo: a second compile of the same graph with the same options
reuses the first one's optimized graph and generated text; anything that differs (a
parameter's values, an option, a patched printer) is lowered again, and reuse never
shares state between the compiled objects."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import lowering, lowering_memo
from graphc.codegen.c import build as c_build


@pytest.fixture
def lowerings(monkeypatch):
    """How many times the passes and printers ran."""
    calls = []
    real = lowering._generate

    def counting(low, *a, **kw):
        calls.append(low.backend)
        return real(low, *a, **kw)
    monkeypatch.setattr(lowering, "_generate", counting)
    return calls


def mlp(seed: int = 0) -> tuple:
    g = gc.Graph("memo_mlp", seed=seed)
    n = gc.sym("N")
    x, y = g.input("x", (n, 6)), g.input("y", (n,), dtype="int64")
    h = gc.tanh(gc.linear(x, 8, name="l1"))
    loss = gc.softmax_cross_entropy(gc.linear(h, 3, name="l2"), y)
    return g, loss


def feeds():
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((5, 6)).astype(np.float32),
            "y": rng.integers(0, 3, 5)}


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_a_second_compile_reuses_the_lowering(lowerings, backend):
    if backend == "c" and not c_build.available()[0]:
        pytest.skip("no C compiler")
    steps = [gc.compile(*mlp(), optimizer=gc.SGD(lr=0.1), backend=backend) for _ in range(2)]
    assert lowerings == [backend]
    assert steps[0].source == steps[1].source and steps[0].path == steps[1].path
    want = torch_loss(steps[1].params, feeds())   # the reused step, against PyTorch
    losses = [[s(**feeds()) for _ in range(3)] for s in steps]
    np.testing.assert_allclose(losses[1][0], want, rtol=1e-5)
    np.testing.assert_array_equal(losses[0], losses[1])


def torch_loss(params: dict, data: dict) -> float:
    """The mlp's loss in float64 PyTorch from the given parameters."""
    import torch
    p = {k: torch.tensor(v, dtype=torch.float64) for k, v in params.items()}
    h = torch.tanh(torch.tensor(data["x"], dtype=torch.float64) @ p["l1_W"] + p["l1_b"])
    logits = h @ p["l2_W"] + p["l2_b"]
    return float(torch.nn.functional.cross_entropy(logits, torch.tensor(data["y"])))


def test_reuse_shares_no_state(lowerings):
    """Training one step moves its params only; the graphs are separate objects."""
    a, b = (gc.compile(*mlp(), optimizer=gc.SGD(lr=0.5), backend="numpy") for _ in range(2))
    before = {k: v.copy() for k, v in b.params.items()}
    for _ in range(3):
        a(**feeds())
    assert all(np.array_equal(b.params[k], v) for k, v in before.items())
    assert not all(np.array_equal(a.params[k], v) for k, v in before.items())
    assert a.graph is not b.graph and len(lowerings) == 1


def test_what_differs_is_lowered_again(lowerings, monkeypatch):
    gc.compile(*mlp(seed=0), optimizer=gc.SGD(lr=0.1), backend="numpy")
    gc.compile(*mlp(seed=1), optimizer=gc.SGD(lr=0.1), backend="numpy")  # other values
    gc.compile(*mlp(seed=0), optimizer=gc.SGD(lr=0.2), backend="numpy")  # other update
    assert len(lowerings) == 3
    real = lowering.numpy_backend.generate
    monkeypatch.setattr(lowering.numpy_backend, "generate",
                        lambda *a, **kw: real(*a, **kw) + "\n# patched\n")
    step = gc.compile(*mlp(seed=0), optimizer=gc.SGD(lr=0.1), backend="numpy")
    assert len(lowerings) == 4 and step.source.endswith("# patched\n")


def test_off_lowers_every_time(lowerings):
    with lowering_memo.off():
        for _ in range(2):
            gc.compile(*mlp(), optimizer=gc.SGD(lr=0.1), backend="numpy")
    assert len(lowerings) == 2


def test_the_memo_is_bounded(lowerings, monkeypatch):
    monkeypatch.setattr(lowering_memo, "SIZE", 2)
    for seed in (0, 1, 2, 0):
        gc.compile(*mlp(seed=seed), optimizer=gc.SGD(lr=0.1), backend="numpy")
    assert len(lowerings) == 4 and len(lowering_memo._memo) == 2


def test_a_graph_the_memo_cannot_key_is_lowered_every_time(lowerings):
    """An attribute of no fixed form (a dict with unsortable keys, a set) gives no key: the
    graph compiles as before, lowered afresh each time, and still computes the loss."""
    steps = []
    for _ in range(2):
        g, loss = mlp()
        g.attrs("x")["note"] = {1: "a", "b": {2}}
        steps.append(gc.compile(g, loss, optimizer=gc.SGD(lr=0.1), backend="numpy"))
    assert len(lowerings) == 2 and not lowering_memo._memo
    assert steps[0](**feeds()) == steps[1](**feeds())
