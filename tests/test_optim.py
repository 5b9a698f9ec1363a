"""Optimizers, gradient clipping and lr schedules as graph updates, against torch.optim:
the same model, initial values and batches, parameters (and optimizer state) compared after
every one of 20 steps in float64."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch

import graphc as gc
from graphc import optim
from graphc.optim import SGD, Adam, AdamW, CosineAnnealingLR, StepLR
from graphc.passes.autodiff import autodiff
from graphc.passes.fuse import fuse
from graphc.passes.pipeline import optimize

# interpreter mode must be on before anything imports triton, and torch.optim's step does
from tests.triton_pipeline import INTERPRET  # noqa: F401

STEPS = 20
BATCH, IN, OUT = 6, 3, 2
RTOL, ATOL = 1e-10, 1e-12   # float64: both sides differ only by rounding


def initial_values() -> dict:
    rng = np.random.default_rng(0)
    return {"W": rng.normal(size=(IN, OUT)), "b": rng.normal(size=OUT)}


def batches(dtype="float64") -> list:
    rng = np.random.default_rng(1)
    return [{"x": rng.normal(size=(BATCH, IN)).astype(dtype),
             "y": rng.normal(size=(BATCH, OUT)).astype(dtype)} for _ in range(STEPS)]


def graphc_run(opt, backend="numpy", dtype="float64", on_step=None) -> tuple:
    """linear + tanh + mse trained by graphc: (the step, [params after each step])."""
    g = gc.Graph("optim_model", dtype=dtype)
    x, y = g.input("x", (BATCH, IN)), g.input("y", (BATCH, OUT))
    init = initial_values()
    W, b = g.param("W", (IN, OUT), init=init["W"]), g.param("b", (OUT,), init=init["b"])
    loss = gc.mse(gc.tanh(x @ W + b), y, name="loss")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # the Triton interpreter's warning
        step = gc.compile(g, loss, optimizer=opt, backend=backend)
    history = []
    for i, feeds in enumerate(batches(dtype)):
        if on_step:
            on_step(i, step)
        step(**feeds)
        history.append({n: np.array(step[n], copy=True) for n in ("W", "b")})
    return step, history


def torch_run(make_opt, schedule=None, clip=None, dtype=torch.float64, on_step=None) -> tuple:
    """The same training in PyTorch: backward, clip_grad_norm_, optimizer.step(),
    scheduler.step(). Returns (optimizer, [params after each step], [grad norms])."""
    init = initial_values()
    W = torch.tensor(init["W"], dtype=dtype, requires_grad=True)
    b = torch.tensor(init["b"], dtype=dtype, requires_grad=True)
    opt = make_opt([W, b])
    sched = schedule(opt) if schedule else None
    history, norms = [], []
    for i, feeds in enumerate(batches()):
        if on_step:
            on_step(i, opt)
        x, y = (torch.tensor(feeds[k], dtype=dtype) for k in ("x", "y"))
        opt.zero_grad()
        torch.mean((torch.tanh(x @ W + b) - y) ** 2).backward()
        if clip is not None:
            norms.append(float(torch.nn.utils.clip_grad_norm_([W, b], clip)))
        opt.step()
        if sched:
            sched.step()
        history.append({"W": W.detach().numpy().copy(), "b": b.detach().numpy().copy()})
    return opt, history, norms


def assert_same_trajectory(ours: list, theirs: list, rtol=RTOL, atol=ATOL):
    for k, (a, t) in enumerate(zip(ours, theirs)):
        for name in a:
            np.testing.assert_allclose(a[name], t[name], rtol=rtol, atol=atol,
                                       err_msg=f"{name} after step {k + 1}")


def step_lr(step_size, gamma):
    return lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size, gamma)


def cosine_lr(T_max, eta_min):  # noqa: N803 (torch's name)
    return lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max, eta_min)


TS = torch.optim
CASES = {  # name: (graphc optimizer, torch optimizer factory, torch scheduler, clip)
    "sgd": (SGD(lr=0.3), lambda p: TS.SGD(p, lr=0.3), None, None),
    "momentum": (SGD(lr=0.1, momentum=0.9), lambda p: TS.SGD(p, lr=0.1, momentum=0.9),
                 None, None),
    "nesterov": (SGD(lr=0.1, momentum=0.8, nesterov=True),
                 lambda p: TS.SGD(p, lr=0.1, momentum=0.8, nesterov=True), None, None),
    "sgd_weight_decay": (SGD(lr=0.2, weight_decay=0.05),
                         lambda p: TS.SGD(p, lr=0.2, weight_decay=0.05), None, None),
    "momentum_weight_decay": (SGD(lr=0.1, momentum=0.9, weight_decay=0.05),
                              lambda p: TS.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.05),
                              None, None),
    "adam": (Adam(lr=0.05), lambda p: TS.Adam(p, lr=0.05), None, None),
    "adam_betas_eps": (Adam(lr=0.02, betas=(0.8, 0.95), eps=1e-3),
                       lambda p: TS.Adam(p, lr=0.02, betas=(0.8, 0.95), eps=1e-3), None, None),
    "adam_weight_decay": (Adam(lr=0.05, weight_decay=0.1),
                          lambda p: TS.Adam(p, lr=0.05, weight_decay=0.1), None, None),
    "adamw": (AdamW(lr=0.05, weight_decay=0.1),
              lambda p: TS.AdamW(p, lr=0.05, weight_decay=0.1), None, None),
    "sgd_clipped": (SGD(lr=0.3, clip_norm=0.5), lambda p: TS.SGD(p, lr=0.3), None, 0.5),
    "adam_clipped": (Adam(lr=0.05, clip_norm=0.5), lambda p: TS.Adam(p, lr=0.05), None, 0.5),
    "step_lr": (SGD(lr=0.2, momentum=0.5, schedule=StepLR(step_size=3, gamma=0.5)),
                lambda p: TS.SGD(p, lr=0.2, momentum=0.5), step_lr(3, 0.5), None),
    "cosine": (Adam(lr=0.05, schedule=CosineAnnealingLR(T_max=7, eta_min=0.002)),
               lambda p: TS.Adam(p, lr=0.05), cosine_lr(7, 0.002), None),
    "cosine_to_zero": (SGD(lr=0.3, schedule=CosineAnnealingLR(T_max=12)),
                       lambda p: TS.SGD(p, lr=0.3), cosine_lr(12, 0.0), None),
    "adamw_clipped_cosine": (
        AdamW(lr=0.05, betas=(0.85, 0.99), weight_decay=0.2, clip_norm=0.5,
              schedule=CosineAnnealingLR(T_max=9, eta_min=0.005)),
        lambda p: TS.AdamW(p, lr=0.05, betas=(0.85, 0.99), weight_decay=0.2),
        cosine_lr(9, 0.005), 0.5),
    "nesterov_decay_clipped_step": (
        SGD(lr=0.2, momentum=0.9, nesterov=True, weight_decay=0.01, clip_norm=0.5,
            schedule=StepLR(step_size=4, gamma=0.7)),
        lambda p: TS.SGD(p, lr=0.2, momentum=0.9, nesterov=True, weight_decay=0.01),
        step_lr(4, 0.7), 0.5),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_torch_optim(case):
    opt, make_torch, schedule, clip = CASES[case]
    _, ours = graphc_run(opt)
    _, theirs, norms = torch_run(make_torch, schedule, clip)
    if clip is not None:  # the clip must both act and not act in these 20 steps
        assert min(norms) < clip < max(norms), norms
    assert_same_trajectory(ours, theirs)


@pytest.mark.parametrize("case", ["momentum", "nesterov", "adam", "adamw_clipped_cosine"])
def test_state_matches_torch(case):
    """Velocity, moments and the step counter are params of the step, equal to torch's
    optimizer state after 20 steps."""
    opt, make_torch, schedule, clip = CASES[case]
    step, _ = graphc_run(opt)
    topt, _, _ = torch_run(make_torch, schedule, clip)
    names = {"momentum_buffer": "velocity", "exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"}
    for p, pname in zip(topt.param_groups[0]["params"], ("W", "b")):
        state = topt.state[p]
        for key, ours in names.items():
            if key in state:
                np.testing.assert_allclose(step[f"{pname}_{ours}"], state[key].numpy(),
                                           rtol=RTOL, atol=ATOL, err_msg=f"{pname} {key}")
        if "step" in state:
            assert float(step["step_count"]) == float(state["step"]) == STEPS


@pytest.mark.parametrize("case", ["adam", "adamw_clipped_cosine", "sgd_clipped"])
def test_triton_backend_matches_torch(case):
    """The same updates as Triton kernels (the interpreter on a CPU), float64."""
    opt, make_torch, schedule, clip = CASES[case]
    step, ours = graphc_run(opt, backend="triton")
    _, theirs, _ = torch_run(make_torch, schedule, clip)
    assert_same_trajectory(ours, theirs)
    assert "@triton.jit" in step.source


@pytest.mark.slow
@pytest.mark.skipif(not INTERPRET, reason="on a GPU the kernels run for real above")
def test_gpu_source_compiles_to_ptx(monkeypatch):
    """The GPU flavour (libdevice.pow, tl.floor) of an AdamW step with clipping and a step
    schedule compiles for sm_90 without a GPU."""
    from tests.test_triton_steps import compile_gpu_kernels
    g = gc.Graph("optim_ptx", dtype="float32")
    x = g.input("x", (BATCH, IN))
    W = g.param("W", (IN, OUT), init=initial_values()["W"])
    loss = gc.sum(gc.tanh(x @ W), name="loss")
    params = g.params(trainable_only=True)
    g2, grads = autodiff(g, loss.name, params)
    g2, updates = AdamW(clip_norm=1.0, schedule=StepLR(3)).build(g2, params, grads)
    keep = [loss.name, *updates.values()]
    fused = fuse(optimize(g2, keep), keep)
    tparams = {n: torch.tensor(fused.attrs(n)["value"]) for n in fused.params()}

    def run(module):
        module.run(torch.ones(BATCH, IN), tparams, {}, module.allocate())
    assert compile_gpu_kernels(fused, [loss.name], updates, run, monkeypatch) >= 3


def test_lr_is_settable_between_steps():
    """step["lr"] = ... takes effect at the next update, as changing torch's group lr."""
    def ours(i, step):
        if i == 5:
            step["lr"] = 0.01

    def theirs(i, opt):
        if i == 5:
            opt.param_groups[0]["lr"] = 0.01
    _, a = graphc_run(Adam(lr=0.05), on_step=ours)
    _, t, _ = torch_run(lambda p: TS.Adam(p, lr=0.05), on_step=theirs)
    assert_same_trajectory(a, t)
    _, unchanged = graphc_run(Adam(lr=0.05))
    assert not np.allclose(a[-1]["W"], unchanged[-1]["W"])


def test_float32_adam_close_to_torch():
    """float32 params: scalars are float32 too (1 - 0.999**t loses ~1e-5 relative to
    cancellation at t = 1), so only float32-level agreement with torch is claimed."""
    _, ours = graphc_run(Adam(lr=0.05, clip_norm=0.5), dtype="float32")
    _, theirs, _ = torch_run(lambda p: TS.Adam(p, lr=0.05), clip=0.5, dtype=torch.float32)
    assert ours[-1]["W"].dtype == np.float32
    assert_same_trajectory(ours, theirs, rtol=1e-4, atol=1e-5)


# ---- what the generated code shows -------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", "triton"])
def test_source_shows_the_update(backend):
    step, _ = graphc_run(AdamW(lr=0.05, weight_decay=0.1, clip_norm=1.0,
                               schedule=StepLR(3)), backend=backend)
    src = step.source
    # the NumPy code materializes lr_scheduled; Triton recomputes it in its scalar kernel.
    # NumPy's recompute rule stores the clipped gradient (a pass over memory to recompute);
    # C's and Triton's recompute it inside the update
    clipped = {"W": r"W_grad_clipped", "b": r"b_grad_clipped"} if backend == "numpy" else \
        {"W": r"clip_scale\*d_W", "b": r"clip_scale\*d_b"}
    squared = r"b_grad_clipped\*\*2" if backend == "numpy" else r"clip_scale\*\*2\*d_b\*\*2"
    for pattern in [rf"W_exp_avg_new = 0\.9\*W_exp_avg \+ 0\.1\*{clipped['W']}",
                    rf"b_exp_avg_sq_new = 0\.999\*b_exp_avg_sq \+ 0\.001\*{squared}",
                    r"step_count_new = step_count \+ 1",
                    r"adam_step_size = .*lr\w*/\(1 - 0\.9\*\*\(step_count \+ 1\)\)",
                    r"adam_bias_correction2_sqrt = sqrt\(1 - 0\.999\*\*\(step_count \+ 1\)\)",
                    r"0\.1\*\*floor\(step_count/3\)\*lr",
                    r"clip_scale = Min\(1, 1\.0/\(sqrt\(.*sqsum.*\) \+ 1\.0e-6\)\)",
                    r"W_new = W\*adamw_decay - "]:
        assert re.search(pattern, src), pattern
    ids = ("W", "b", "W_exp_avg", "W_exp_avg_sq", "b_exp_avg", "b_exp_avg_sq", "step_count")
    updated = re.split(r"[ ,()]+", re.search(r"Updates: (.*)", src).group(1))
    assert set(ids) <= set(updated), updated


def test_state_params_are_untrained_and_saved(tmp_path):
    step, _ = graphc_run(SGD(lr=0.1, momentum=0.9, schedule=StepLR(5)))
    g = step.graph
    for n in ("W_velocity", "b_velocity", "lr", "step_count"):
        assert g.attrs(n)["trainable"] is False, n
    assert float(step["step_count"]) == STEPS
    step.save(tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz") as f:
        assert {"W_velocity", "step_count", "lr"} <= set(f.files)


@pytest.mark.parametrize("opt", [SGD(lr=0.1, momentum=0.9), AdamW(clip_norm=1.0,
                                                                  schedule=StepLR(3))])
def test_build_leaves_its_graph_as_it_was(opt):
    """Optimizer.build is pure: the update nodes go into a copy."""
    g = gc.Graph("pure_build", dtype="float64")
    w = g.param("w", (3,), init=np.ones(3))
    loss = gc.sum(w * w)
    g2, grads = autodiff(g, loss.name, ["w"])
    nodes, count = dict(g2.nx.nodes(data=True)), len(g2)
    grown, updates = opt.build(g2, ["w"], grads)
    assert len(g2) == count and dict(g2.nx.nodes(data=True)) == nodes
    assert set(updates) >= {"w"} and all(u in grown.nx and u not in g2.nx
                                          for u in updates.values())


def test_plain_sgd_adds_no_state():
    step, _ = graphc_run(SGD(lr=0.1))
    assert sorted(step.params) == ["W", "b", "lr"]


# ---- arguments and repr ----------------------------------------------------------------------

@pytest.mark.parametrize("make,arg", [
    (lambda: SGD(lr=-0.1), "lr"),
    (lambda: SGD(lr=0), "lr"),
    (lambda: SGD(lr="0.1"), "lr"),
    (lambda: Adam(lr=float("nan")), "lr"),
    (lambda: SGD(0.1, momentum=1.0), "momentum"),
    (lambda: SGD(0.1, nesterov=True), "momentum"),
    (lambda: SGD(0.1, weight_decay=-1e-3), "weight_decay"),
    (lambda: SGD(0.1, clip_norm=0.0), "clip_norm"),
    (lambda: Adam(lr=-1e-3), "lr"),
    (lambda: Adam(betas=(1.0, 0.999)), "betas[0]"),
    (lambda: Adam(betas=(0.9, -0.1)), "betas[1]"),
    (lambda: Adam(betas=0.9), "betas"),
    (lambda: Adam(eps=-1e-8), "eps"),
    (lambda: AdamW(weight_decay=-0.01), "weight_decay"),
    (lambda: AdamW(schedule="cosine"), "schedule"),
    (lambda: StepLR(0), "step_size"),
    (lambda: StepLR(2.5), "step_size"),
    (lambda: StepLR(2, gamma=0.0), "gamma"),
    (lambda: CosineAnnealingLR(0), "T_max"),
    (lambda: CosineAnnealingLR(10, eta_min=-0.1), "eta_min"),
])
def test_bad_arguments_raise_naming_them(make, arg):
    with pytest.raises(ValueError, match=re.escape(f": {arg} must be")):
        make()


@pytest.mark.parametrize("opt,text", [
    (SGD(0.1, 0.9), "SGD(lr=0.1, momentum=0.9)"),
    (gc.SGD(lr=0.5), "SGD(lr=0.5, momentum=0.0)"),
    (SGD(0.1, 0.9, nesterov=True, weight_decay=0.01, clip_norm=1.0, schedule=StepLR(5, 0.5)),
     "SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01, clip_norm=1.0, "
     "schedule=StepLR(step_size=5, gamma=0.5))"),
    (Adam(), "Adam(lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.0)"),
    (AdamW(schedule=CosineAnnealingLR(100, 1e-5)),
     "AdamW(lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.01, "
     "schedule=CosineAnnealingLR(T_max=100, eta_min=1e-05))"),
])
def test_repr(opt, text):
    assert repr(opt) == text
    assert repr(eval(text, vars(optim))) == text   # the repr rebuilds the same optimizer
