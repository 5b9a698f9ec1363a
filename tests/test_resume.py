"""Resume equivalence: training 2N steps equals training N, saving, loading in a new process
and training N more, bitwise (parameters, optimizer state, rand counter, losses, data order),
on the NumPy backend, also when N ends mid-epoch."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc import checkpoint

N = gc.sym("N")
ROOT = Path(__file__).resolve().parents[1]
FIT = dict(epochs=3, batch_size=8, shuffle=True, seed=5, progress=False)  # 7 batches/epoch
OPTIMIZERS = {"sgd_momentum": lambda: gc.SGD(lr=0.05, momentum=0.9),
              "adam": lambda: gc.Adam(lr=0.01)}


def data() -> dict:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 6)).astype(np.float32)   # 50 = 6 batches of 8 and one of 2
    return {"x": x, "t": np.sin(x[:, :2] * 2).astype(np.float32)}


def step(optimizer: str):
    g = gc.Graph("resumed", seed=2)
    x = g.input("x", (N, 6))
    h = gc.dropout(gc.tanh(gc.linear(x, 8, name="l1")), 0.2, name="drop")  # reads rand
    loss = gc.mse(gc.linear(h, 2, name="l2"), g.input("t", (N, 2)), name="loss")
    return gc.compile(g, loss, optimizer=OPTIMIZERS[optimizer](), backend="numpy")


def in_new_process(optimizer: str, ckpt: Path, out: Path, max_steps) -> dict:
    """Resume from ckpt in a fresh interpreter; its final checkpoint goes to out."""
    script = textwrap.dedent(f"""
        import json
        import graphc as gc
        from tests.test_resume import FIT, data, step
        s = step({optimizer!r})
        trainer = gc.Trainer(s)
        h = trainer.fit(data(), **FIT, max_steps={max_steps!r}, resume_from={str(ckpt)!r})
        trainer.save({str(out)!r})
        print(json.dumps({{"step_loss": h.step_loss, "loss": h.loss}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("optimizer, n, total", [
    ("sgd_momentum", 10, 20),   # stops mid-epoch 2 (batch 3 of 7)
    ("adam", 10, 20),
    ("adam", 7, None),          # stops at an epoch's end; the resumed fit runs to the end
])
def test_train_save_resume_in_a_new_process_equals_one_fit(tmp_path, optimizer, n, total):
    whole = step(optimizer)
    ref = gc.Trainer(whole).fit(data(), **FIT, max_steps=total)
    first = step(optimizer)
    trainer = gc.Trainer(first)
    h1 = trainer.fit(data(), **FIT, max_steps=n)
    assert trainer.state is not None and trainer.state.steps == n
    trainer.save(tmp_path / "half.safetensors")
    h2 = in_new_process(optimizer, tmp_path / "half.safetensors", tmp_path / "end.safetensors",
                        total)
    assert h1.step_loss + h2["step_loss"] == ref.step_loss   # floats: bitwise
    assert h1.loss + h2["loss"] == ref.loss                  # the split epoch's mean too
    end = checkpoint.load(tmp_path / "end.safetensors")
    assert sorted(end.arrays) == sorted(whole.params)
    for name, value in end.arrays.items():   # weights, momenta/moments, counters, rng_step
        np.testing.assert_array_equal(value, whole[name], err_msg=name)
        assert value.dtype == whole[name].dtype
    assert end.trainer["steps"] == len(ref.step_loss)
    assert float(whole["rng_step"]) == len(ref.step_loss)


def test_periodic_checkpoints_resume_the_same_way(tmp_path):
    """fit(checkpoint=path, checkpoint_every=k): after a crash, resume_from=path continues."""
    whole = step("adam")
    ref = gc.Trainer(whole).fit(data(), **FIT)
    crashed = step("adam")
    gc.Trainer(crashed).fit(data(), **FIT, max_steps=12, checkpoint=tmp_path / "c.npz",
                            checkpoint_every=5)   # "crashes" after step 12: last save at 10
    again = step("adam")
    h = gc.Trainer(again).fit(data(), **FIT, resume_from=tmp_path / "c.npz")
    assert h.step_loss == ref.step_loss[10:]
    for name in whole.params:
        np.testing.assert_array_equal(again[name], whole[name], err_msg=name)


def test_resume_refuses_what_cannot_continue(tmp_path):
    s = step("sgd_momentum")
    trainer = gc.Trainer(s)
    with pytest.raises(ValueError, match="has not run fit"):
        trainer.save(tmp_path / "never.safetensors")
    trainer.fit(data(), **FIT, max_steps=3)
    trainer.save(tmp_path / "t.safetensors")
    with pytest.raises(gc.CheckpointError, match="batch_size = 8, this one has 16"):
        gc.Trainer(step("sgd_momentum")).fit(data(), **{**FIT, "batch_size": 16},
                                             resume_from=tmp_path / "t.safetensors")
    s.save(tmp_path / "params_only.safetensors")
    with pytest.raises(gc.CheckpointError, match="no trainer state"):
        gc.Trainer(step("sgd_momentum")).fit(data(), **FIT,
                                             resume_from=tmp_path / "params_only.safetensors")
