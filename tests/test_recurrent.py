"""Recurrent layers (graphc.recurrent) against PyTorch in float64: outputs and gradients of
every param, input and initial state equal torch.nn.RNN / LSTM / GRU with mapped weights
(from_torch_state), the course's GRU equals a hand-written torch version of the slide,
truncated BPTT equals torch with h.detach() between windows, and the Triton backend
(interpreter) trains like the NumPy one.

Tolerances: float64 against torch, rtol 1e-10, atol 1e-12 (the same sums in another
order); Triton against NumPy in float32, rtol 1e-5, atol 1e-6.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import graphc as gc
from graphc import recurrent as rec
from graphc.recurrent import CarriedState, from_torch_state, sequence_feeds, sequence_inputs

# puts Triton in interpreter mode (no GPU) before torch.optim imports triton: Triton's own
# @jit helpers made before that would not interpret
from tests.triton_pipeline import INTERPRET  # noqa: F401

N, D, H = 2, 3, 4
RTOL, ATOL = 1e-10, 1e-12
TORCH = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def close(got, want, what=""):
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=what)


# ---- the graph side -----------------------------------------------------------------------

def layer(kind: str, xs, h0, c0, **kw):
    """(hidden states, final h, final c or None) of a layer named `net`."""
    if kind == "rnn":
        hs = rec.rnn(xs, H, name="net", h0=h0, **kw)
        return hs, hs[-1], None
    if kind == "lstm":
        hs, (h, c) = rec.lstm(xs, H, name="net", h0=h0, c0=c0, **kw)
        return hs, h, c
    hs = rec.gru(xs, H, name="net", h0=h0, **kw)
    return hs, hs[-1], None


def graphc_run(kind, T, weights, feeds, with_state, **kw):
    """Loss = mean over t of sum(h_t * R_t); returns {name: value} of the loss, hidden
    states, final states and the gradients w.r.t. params, inputs and initial states."""
    g = gc.Graph(f"{kind}_vs_torch", dtype="float64")
    xs = sequence_inputs(g, "x", T, (N, D))
    h0 = g.input("h0", (N, H)) if with_state else None
    c0 = g.input("c0", (N, H)) if with_state and kind == "lstm" else None
    hs, h_last, c_last = layer(kind, xs, h0, c0, **kw)
    R = [g.const(feeds["R"][t]) for t in range(T)]
    loss = rec.time_mean([gc.sum(h * r) for h, r in zip(hs, R)], name="loss")
    wrt = g.params() + [x.name for x in xs] + [s.name for s in (h0, c0) if s is not None]
    grads = gc.grad(loss, wrt)
    outs = [loss, *hs, h_last] + ([c_last] if c_last is not None else []) + grads
    f = gc.function(g, outs, backend="numpy")
    for name, value in weights.items():
        f[name] = value
    inputs = sequence_feeds("x", feeds["x"])
    inputs.update({s.name: feeds[s.name] for s in (h0, c0) if s is not None})
    values = f(inputs)
    names = ["loss"] + [f"h{t}" for t in range(T)] + ["h_last"] + \
        (["c_last"] if c_last is not None else []) + [f"d_{w}" for w in wrt]
    return dict(zip(names, values))


# ---- the torch side -----------------------------------------------------------------------

def torch_module(kind: str, seed: int = 0):
    torch.manual_seed(seed)
    return TORCH[kind](D, H).double()


def torch_grads(kind: str, m, name: str = "net") -> dict:
    """Torch's parameter gradients in our param space. U = W_ih^T and W = W_hh^T are linear,
    so their gradients map like the weights; b = b_ih + b_hh, so dL/db = dL/db_ih (which
    equals dL/db_hh, checked); GRU z is negated; GRU h has separate b_in and b_hn."""
    gates = rec.TORCH_GATE_ORDER[kind]
    split = {k: np.split(getattr(m, f"{k}_l0").grad.numpy(), len(gates))
             for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    out = {}
    for k, gate in enumerate(gates):
        sign = -1.0 if (kind, gate) == ("gru", "z") else 1.0
        suffix = f"_{gate}" if gate else ""
        out[f"d_{name}_U{suffix}"] = sign * split["weight_ih"][k].T
        out[f"d_{name}_W{suffix}"] = sign * split["weight_hh"][k].T
        if (kind, gate) == ("gru", "h"):
            out[f"d_{name}_b_h"], out[f"d_{name}_bW_h"] = split["bias_ih"][k], split["bias_hh"][k]
        else:
            close(split["bias_ih"][k], split["bias_hh"][k], "torch's two biases")
            out[f"d_{name}_b{suffix}"] = sign * split["bias_ih"][k]
    return out


def torch_run(kind, m, feeds, with_state):
    x = torch.tensor(feeds["x"], requires_grad=True)
    T = x.shape[0]
    state = None
    if with_state:
        h0 = torch.tensor(feeds["h0"][None], requires_grad=True)
        c0 = torch.tensor(feeds["c0"][None], requires_grad=True)
        state = (h0, c0) if kind == "lstm" else h0
    out, final = m(x, state)
    loss = (out * torch.tensor(feeds["R"])).sum() / T
    loss.backward()
    got = {"loss": loss.item(), "h_last": out[-1].detach().numpy()}
    got.update({f"h{t}": out[t].detach().numpy() for t in range(T)})
    got.update({f"d_x{t}": x.grad[t].numpy() for t in range(T)})
    if kind == "lstm":
        got["c_last"] = final[1][0].detach().numpy()
    if with_state:
        got["d_h0"] = h0.grad[0].numpy()
        if kind == "lstm":
            got["d_c0"] = c0.grad[0].numpy()
    got.update(torch_grads(kind, m))
    return got


def random_feeds(T: int, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(T, N, D)), "h0": rng.normal(size=(N, H)) * 0.5,
            "c0": rng.normal(size=(N, H)) * 0.5, "R": rng.normal(size=(T, N, H))}


def state_dict(m) -> dict:
    return {k: v.numpy() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("T,with_state", [(4, True), (3, False), (1, True)])
def test_layers_match_torch(kind, T, with_state):
    """Every hidden state, the final (h, c), the loss and the gradient of every param,
    input and initial state: graphc's unrolled graph = torch's nn layer (BPTT)."""
    m = torch_module(kind, seed=T)
    feeds = random_feeds(T, seed=T + 10)
    kw = {"reset_after": True} if kind == "gru" else {}
    got = graphc_run(kind, T, from_torch_state(kind, state_dict(m), "net"), feeds,
                     with_state, **kw)
    want = torch_run(kind, m, feeds, with_state)
    assert set(want) <= set(got)
    for name, value in want.items():
        close(got[name], value, name)


def test_rnn_with_another_activation_matches_torch():
    """activation=gc.relu against torch.nn.RNN(nonlinearity="relu"): loss and gradients."""
    T = 3
    torch.manual_seed(4)
    m = torch.nn.RNN(D, H, nonlinearity="relu").double()
    feeds = random_feeds(T, seed=4)
    g = gc.Graph("relu_rnn", dtype="float64")
    xs = sequence_inputs(g, "x", T, (N, D))
    hs = rec.rnn(xs, H, name="net", h0=g.input("h0", (N, H)), activation=gc.relu)
    loss = rec.time_mean([gc.sum(h * g.const(r)) for h, r in zip(hs, feeds["R"])])
    grads = gc.grad(loss, g.params())
    f = gc.function(g, [loss, *grads], backend="numpy")
    for name, value in from_torch_state("rnn", state_dict(m), "net").items():
        f[name] = value
    got = dict(zip(["loss", *(f"d_{p}" for p in g.params())],
                   f({**sequence_feeds("x", feeds["x"]), "h0": feeds["h0"]})))
    want = torch_run("rnn", m, feeds, with_state=True)
    for name in got:
        close(got[name], want[name], name)


def gru_course_torch(x, h0, p: dict, R):
    """The slide's GRU in torch (float64 autograd):
    z = σ(xU_z + hW_z + b_z), r = σ(xU_r + hW_r + b_r), h~ = tanh(xU_h + (r∘h)W_h + b_h),
    h_t = (1-z)∘h_{t-1} + z∘h~."""
    h, loss = h0, 0.0
    for t in range(x.shape[0]):
        z = torch.sigmoid(x[t] @ p["U_z"] + h @ p["W_z"] + p["b_z"])
        r = torch.sigmoid(x[t] @ p["U_r"] + h @ p["W_r"] + p["b_r"])
        h_tilde = torch.tanh(x[t] @ p["U_h"] + (r * h) @ p["W_h"] + p["b_h"])
        h = (1 - z) * h + z * h_tilde
        loss = loss + (h * R[t]).sum()
    return loss / x.shape[0]


def test_gru_course_form_matches_handwritten_torch():
    """reset_after=False (the course: r∘h before the product by W_h) against the slide's
    equations written in torch; graphc's params at their seeded initial values, biases
    made nonzero so they matter."""
    T = 4
    feeds = random_feeds(T, seed=3)
    rng = np.random.default_rng(5)
    shape = {"U": (D, H), "W": (H, H), "b": (H,)}
    names = [f"{m}_{k}" for k in rec.GRU_GATES for m in "UWb"]
    weights = {f"net_{n}": rng.normal(size=shape[n[0]]) * 0.5 for n in names}
    got = graphc_run("gru", T, weights, feeds, with_state=True, reset_after=False)
    assert "d_net_bW_h" not in got   # the course form has one bias per gate
    p = {n: torch.tensor(weights[f"net_{n}"], requires_grad=True) for n in names}
    x = torch.tensor(feeds["x"], requires_grad=True)
    h0 = torch.tensor(feeds["h0"], requires_grad=True)
    loss = gru_course_torch(x, h0, p, torch.tensor(feeds["R"]))
    loss.backward()
    close(got["loss"], loss.item(), "loss")
    close(got["d_h0"], h0.grad.numpy(), "d_h0")
    for t in range(T):
        close(got[f"d_x{t}"], x.grad[t].numpy(), f"d_x{t}")
    for n in names:
        close(got[f"d_net_{n}"], p[n].grad.numpy(), f"d_net_{n}")


def test_zero_initial_state_equals_a_fed_zero_state():
    """h0=None (terms with h0 left out) computes what a fed h0 = 0 (and c0 = 0) computes."""
    T = 3
    feeds = {**random_feeds(T), "h0": np.zeros((N, H)), "c0": np.zeros((N, H))}
    for kind in ("rnn", "lstm", "gru"):
        kw = {"reset_after": True} if kind == "gru" else {}
        weights = from_torch_state(kind, state_dict(torch_module(kind)), "net")
        none = graphc_run(kind, T, weights, feeds, with_state=False, **kw)
        fed = graphc_run(kind, T, weights, feeds, with_state=True, **kw)
        for name, value in none.items():
            close(value, fed[name], f"{kind} {name}")


def test_params_are_created_once_and_tied_across_steps():
    """One set of params whatever T; every step's matmuls read the same U and W."""
    for T in (1, 5):
        g = gc.Graph("tied")
        xs = sequence_inputs(g, "x", T, (gc.sym("N"), D))
        rec.lstm(xs, H, name="enc")
        assert g.params() == [f"enc_{m}_{k}" for k in rec.LSTM_GATES for m in "UWb"]
        assert len(g.users("enc_U_i")) == T
        assert len(g.users("enc_W_i")) == T - 1   # step 0 starts from zeros: no h @ W
    g = gc.Graph("rnn_names")
    rec.rnn(sequence_inputs(g, "x", 2, (N, D)), H, name="r")
    assert g.params() == ["r_U", "r_W", "r_b"]
    assert [g["r_h0"].op, g["r_h1"].op] == ["map", "map"]   # h_t = tanh(x_t U + h W + b)


def test_initial_values_of_the_layers():
    """U Xavier-uniform, W orthogonal, biases zero; the LSTM forget bias is forget_bias."""
    g = gc.Graph("init", dtype="float64")
    xs = sequence_inputs(g, "x", 2, (N, 5))
    rec.lstm(xs, 6, name="a")
    rec.lstm(xs, 6, name="b", forget_bias=0.0)
    rec.gru(xs, 6, name="c", reset_after=True)
    value = {n: g.attrs(n)["value"] for n in g.params()}
    bound = np.sqrt(6.0 / (5 + 6))
    for n, v in value.items():
        kind = n.split("_")[1]
        if kind == "U":
            assert np.abs(v).max() <= bound and v.std() > bound / 4
        elif kind == "W":
            close(v.T @ v, np.eye(6), n)
        elif n == "a_b_f":
            assert np.all(v == 1.0)
        else:
            assert np.all(v == 0.0), n
    assert not np.array_equal(value["a_U_i"], value["a_U_f"])  # seeded by name, not shared


def test_language_model_step_matches_torch():
    """The benchmark's model, small: one-hot inputs, LSTM, shared readout V h_t + c, mean
    over time of softmax cross-entropy; loss and every gradient vs torch."""
    T, V = 3, 5
    rng = np.random.default_rng(7)
    tokens = rng.integers(0, V, size=(T + 1, N))
    g = gc.Graph("tiny_lm", dtype="float64")
    xs = sequence_inputs(g, "x", T, (N, V))
    ys = sequence_inputs(g, "y", T, (N,), dtype="int64")
    hs, _ = rec.lstm(xs, H, name="lstm", forget_bias=0.0)
    logits = rec.dense(hs, V, name="out")
    loss = rec.time_mean([gc.softmax_cross_entropy(z, y) for z, y in zip(logits, ys)])
    grads = gc.grad(loss, g.params())
    f = gc.function(g, [loss, *grads], backend="numpy")
    torch.manual_seed(0)
    m = torch.nn.LSTM(V, H).double()
    readout = torch.nn.Linear(H, V).double()
    for name, value in from_torch_state("lstm", state_dict(m), "lstm").items():
        f[name] = value
    f["out_V"], f["out_c"] = readout.weight.detach().numpy().T, readout.bias.detach().numpy()
    onehot = np.eye(V)[tokens[:-1]]
    got = dict(zip(["loss", *g.params()], f({**sequence_feeds("x", onehot),
                                             **sequence_feeds("y", tokens[1:])})))
    out, _ = m(torch.tensor(onehot))
    logits_t = readout(out)
    want = torch.nn.functional.cross_entropy(logits_t.reshape(T * N, V),
                                             torch.tensor(tokens[1:]).reshape(-1))
    want.backward()
    close(got["loss"], want.item(), "loss")
    for name, value in torch_grads("lstm", m, "lstm").items():
        close(got[name[2:]], value, name)
    close(got["out_V"], readout.weight.grad.numpy().T, "d_out_V")
    close(got["out_c"], readout.bias.grad.numpy(), "d_out_c")


# ---- truncated BPTT -----------------------------------------------------------------------

def tbptt_model(T: int):
    g = gc.Graph("tbptt", dtype="float64")
    xs = sequence_inputs(g, "x", T, (gc.sym("N"), D))
    h0, c0 = g.input("h0", (gc.sym("N"), H)), g.input("c0", (gc.sym("N"), H))
    hs, (h, c) = rec.lstm(xs, H, name="net", h0=h0, c0=c0)
    targets = sequence_inputs(g, "t", T, (gc.sym("N"), H))
    loss = rec.time_mean([gc.mse(a, b) for a, b in zip(hs, targets)], name="loss")
    return g, loss, h, c


def test_truncated_bptt_matches_torch_with_detach():
    """Two windows of T=3: the final (h, c) of window 1 fed as (h0, c0) of window 2, with
    SGD after each; torch does the same with h.detach(). Losses and params agree, and
    CarriedState does what the hand-written loop does. Torch's b_hh is held at zero: SGD
    on b_ih and b_hh would move their sum, our one b, twice as far."""
    T, lr = 3, 0.5
    rng = np.random.default_rng(11)
    x, target = rng.normal(size=(2, T, N, D)), rng.normal(size=(2, T, N, H)) * 0.5
    g, loss, h, c = tbptt_model(T)
    m = torch_module("lstm", seed=2)
    with torch.no_grad():
        m.bias_hh_l0.zero_()
    m.bias_hh_l0.requires_grad_(False)
    steps = []
    for _ in range(2):
        step = gc.compile(g, loss, gc.SGD(lr=lr), backend="numpy", outputs=[h, c])
        for name, value in from_torch_state("lstm", state_dict(m), "net").items():
            step[name] = value
        steps.append(step)
    manual, carried = steps[0], CarriedState(steps[1], {"h0": h, "c0": c})
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=lr)
    state = {"h0": np.zeros((N, H)), "c0": np.zeros((N, H))}
    th, tc = torch.zeros(1, N, H, dtype=torch.float64), torch.zeros(1, N, H, dtype=torch.float64)
    for w in range(2):
        feeds = {**sequence_feeds("x", x[w]), **sequence_feeds("t", target[w])}
        got = manual({**feeds, **state})
        state = {"h0": manual.outputs[h.name], "c0": manual.outputs[c.name]}
        close(carried(feeds), got, "CarriedState")
        opt.zero_grad()
        out, (th, tc) = m(torch.tensor(x[w]), (th.detach(), tc.detach()))
        want = ((out - torch.tensor(target[w])) ** 2).mean(dim=(1, 2)).mean()
        want.backward()
        opt.step()
        close(got, want.item(), f"window {w} loss")
        close(state["h0"], th[0].detach().numpy(), f"window {w} final h")
    for name, value in from_torch_state("lstm", state_dict(m), "net").items():
        close(manual[name], value, name)
        close(carried.step[name], value, name)
    carried.reset()
    assert carried.state == {}


def test_carried_state_needs_the_final_state_among_the_outputs():
    g, loss, h, c = tbptt_model(2)
    step = gc.compile(g, loss, gc.SGD(lr=0.1), backend="numpy", outputs=[h])
    with pytest.raises(ValueError, match="not outputs of the step"):
        CarriedState(step, {"h0": h, "c0": c})
    with pytest.raises(ValueError, match=r"\['h'\] are not inputs"):
        CarriedState(step, {"h": h})


# ---- the Triton backend -------------------------------------------------------------------

def test_gru_training_steps_triton_match_numpy():
    """Three SGD steps of a GRU (course form) with backend="triton" (the interpreter on a
    CPU) give the NumPy backend's losses and params (float32)."""
    T = 3
    g = gc.Graph("gru_triton")
    xs = sequence_inputs(g, "x", T, (gc.sym("N"), D))
    hs = rec.gru(xs, H, name="net")
    targets = sequence_inputs(g, "t", T, (gc.sym("N"), H))
    loss = rec.time_mean([gc.mse(a, b) for a, b in zip(hs, targets)], name="loss")
    ref = gc.compile(g, loss, gc.SGD(lr=0.5), backend="numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the interpreter's warning
        step = gc.compile(g, loss, gc.SGD(lr=0.5), backend="triton")
    rng = np.random.default_rng(3)
    for n in (5, 5, 3):
        feeds = {**sequence_feeds("x", rng.normal(size=(T, n, D)).astype(np.float32)),
                 **sequence_feeds("t", rng.normal(size=(T, n, H)).astype(np.float32))}
        assert step(feeds) == pytest.approx(ref(feeds), rel=1e-5)
    for name in ref.params:
        np.testing.assert_allclose(step[name], ref[name], rtol=1e-5, atol=1e-6, err_msg=name)


# ---- bad input ----------------------------------------------------------------------------

def test_bad_sequences_and_states_are_named():
    g = gc.Graph("bad")
    xs = sequence_inputs(g, "x", 2, (N, D))
    odd = g.input("odd", (N, D + 1))
    with pytest.raises(gc.ShapeError, match=r"step 1 input 'odd' has shape \(2, 4\)"):
        rec.rnn([xs[0], odd], H, name="a")
    with pytest.raises(gc.ShapeError, match=r"h0 'h' has shape \(2, 3\), expected \(N, 4\)"):
        rec.lstm(xs, H, name="b", h0=g.input("h", (N, 3)))
    with pytest.raises(ValueError, match="empty"):
        rec.gru([], H)
    with pytest.raises(ValueError, match="length"):
        sequence_inputs(g, "y", 0, (N, D))
    with pytest.raises(ValueError, match="kind"):
        from_torch_state("elman", {}, "net")


# ---- compiling long unrolled graphs ---------------------------------------------------------

def test_kernel_grouping_cycle_checks_agree_with_the_graph_of_kernels():
    """Fusion's cycle check on an unrolled GRU's training graph (bounded by ranks, with a
    bitset shortcut, so long sequences compile in linear time) answers, for every merge it
    considers, what networkx says about the graph of kernels with the two merged; and the
    ranks stay a topological order of that graph after every merge."""
    import networkx as nx

    from graphc.passes.autodiff import autodiff
    from graphc.passes.fuse import merge_maps
    from graphc.passes.fuse_groups import Grouping
    from graphc.passes.pipeline import optimize

    g = gc.Graph("gru_fuse")
    xs = sequence_inputs(g, "x", 3, (gc.sym("N"), D))
    loss = rec.time_mean([gc.sum(h) for h in rec.gru(xs, H, name="net")], name="loss")
    bwd, grads = autodiff(g, loss.name, g.params())
    keep = frozenset([loss.name, *grads])
    fused = optimize(bwd, keep)
    merge_maps(fused, keep, {})

    class Checked(Grouping):
        def kernel_graph(self, merged: set = frozenset()):
            q = nx.DiGraph()
            unit = {n: "merged" if n in merged else self.unit(n) for n in self.order}
            q.add_nodes_from(unit.values())
            q.add_edges_from((unit[n], unit[u]) for n in self.order for u in self.users[n]
                             if unit[n] != unit[u])
            return q

        def cycle(self, nodes):
            found = super().cycle(nodes)
            assert (found is not None) == (not nx.is_directed_acyclic_graph(
                self.kernel_graph(set(nodes)))), sorted(nodes)
            return found

        def try_merge(self, n, m):
            merged = super().try_merge(n, m)
            if merged:
                q = self.kernel_graph()
                assert all(self.rank[a] < self.rank[b] for a, b in q.edges)
            return merged

    grouping = Checked(fused, keep)
    grouping.run()
    kernels, _ = grouping.schedule()
    assert len(kernels) < len(grouping.group_of)   # merges happened, some were refused
    assert any("would create a cycle" in line for line in grouping.log)
