"""A character-level language model with a vanilla RNN, an LSTM and a GRU, each built
from the course's equations and unrolled over T characters (backpropagation through
time), trained by truncated BPTT on a public-domain text (examples/data/): the hidden
state after one window is fed, without gradient, as the start of the next. Prints the
loss per character against the unigram entropy of the text (what a model that ignores
context gets), and a sample drawn from each trained model.

    python examples/char_lm.py [--cells rnn lstm gru] [--steps 300] [--window 16]
                                [--hidden 128] [--out DIR]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import graphc as gc
from graphc import recurrent
from graphc.render import pyplot, save_figure

TEXT = Path(__file__).resolve().parent / "data" / "declaration_of_independence.txt"
OUTPUT = Path(__file__).resolve().parent / "output"


def load_text(path: Path = TEXT):
    """The text with runs of whitespace made single spaces, its alphabet and ids."""
    text = " ".join(path.read_text().split())
    alphabet = sorted(set(text))
    ids = np.array([alphabet.index(c) for c in text], dtype=np.int64)
    return text, alphabet, ids


def unigram_entropy(ids: np.ndarray, vocab: int) -> float:
    """-sum p log p over character frequencies, in nats per character."""
    p = np.bincount(ids, minlength=vocab) / len(ids)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def build(cell: str, window: int, vocab: int, hidden: int, batch, seed: int):
    """x0..x{T-1} (character ids) -> one-hot -> cell -> logits at every step; the loss is
    the mean cross-entropy of predicting y_t (the next character) over the window. The
    initial state h0 (and c0) is an input: the previous window's final state."""
    g = gc.Graph(f"char_{cell}", seed=seed)
    xs = recurrent.sequence_inputs(g, "x", window, (batch,), dtype="int64")
    ys = recurrent.sequence_inputs(g, "y", window, (batch,), dtype="int64")
    onehots = [gc.one_hot(x, vocab) for x in xs]
    h0 = g.input("h0", (batch, hidden))
    state = {"h": h0}
    if cell == "lstm":
        c0 = g.input("c0", (batch, hidden))
        hs, (h_last, c_last) = recurrent.lstm(onehots, hidden, name=cell, h0=h0, c0=c0)
        state.update(c=c0)
        carried = {"h0": h_last, "c0": c_last}
    else:
        layer = recurrent.rnn if cell == "rnn" else recurrent.gru
        hs = layer(onehots, hidden, name=cell, h0=h0)
        carried = {"h0": hs[-1]}
    logits = recurrent.dense(hs, vocab, name="out")
    losses = [gc.softmax_cross_entropy(z, y) for z, y in zip(logits, ys)]
    loss = recurrent.time_mean(losses, name="loss")
    return g, loss, logits, carried


def windows(ids: np.ndarray, batch: int, window: int):
    """Truncated-BPTT order: the text cut into `batch` streams read side by side, so row r
    of window k+1 continues row r of window k. Yields (x, y), each (window, batch)."""
    per_stream = (len(ids) - 1) // batch
    x = ids[:batch * per_stream].reshape(batch, per_stream)
    y = ids[1:batch * per_stream + 1].reshape(batch, per_stream)
    for start in range(0, per_stream - window + 1, window):
        yield x[:, start:start + window].T, y[:, start:start + window].T


def train(cell: str, ids, vocab: int, args):
    g, loss, logits, carried = build(cell, args.window, vocab, args.hidden, args.batch,
                                     args.seed)
    t0 = time.perf_counter()
    step = gc.compile(g, loss, optimizer=gc.Adam(lr=args.lr, clip_norm=1.0),
                      outputs=list(carried.values()), backend="numpy")
    compile_s = time.perf_counter() - t0
    zero = np.zeros((args.batch, args.hidden), np.float32)
    losses, done, t0 = [], 0, time.perf_counter()
    while done < args.steps:
        state = {name: zero for name in carried}           # each pass starts from zeros
        for x, y in windows(ids, args.batch, args.window):
            feeds = {**recurrent.sequence_feeds("x", x), **recurrent.sequence_feeds("y", y),
                     **state}
            losses.append(step(feeds))
            # the final state goes on to the next window as an input: no gradient crosses
            state = {name: step.outputs[node.name] for name, node in carried.items()}
            done += 1
            if done == args.steps:
                break
    return step, losses, compile_s, time.perf_counter() - t0


def evaluate(step, cell, ids, vocab, args) -> float:
    """Mean loss per character on held-out text, state carried window to window."""
    g, loss, logits, carried = build(cell, args.window, vocab, args.hidden, args.batch,
                                     args.seed)
    f = gc.function(g, [loss, *carried.values()], backend="numpy")
    for name in f.params:
        f[name] = step[name]
    zero = np.zeros((args.batch, args.hidden), np.float32)
    state, total, count = {name: zero for name in carried}, 0.0, 0
    for x, y in windows(ids, args.batch, args.window):
        value, *finals = f({**recurrent.sequence_feeds("x", x),
                            **recurrent.sequence_feeds("y", y), **state})
        state = dict(zip(carried, finals))
        total, count = total + float(value), count + 1
    return total / max(count, 1)


def sample(step, cell, alphabet, args, length: int = 160, prime: str = "We hold ") -> str:
    """Characters drawn one at a time from a one-step copy of the model (same params)."""
    vocab = len(alphabet)
    g, loss, logits, carried = build(cell, 1, vocab, args.hidden, 1, args.seed)
    f = gc.function(g, [logits[0], *carried.values()], backend="numpy")
    for name in f.params:
        f[name] = step[name]
    rng = np.random.default_rng(args.seed)
    state = {name: np.zeros((1, args.hidden), np.float32) for name in carried}
    out, probs = list(prime), None
    for t in range(len(prime) + length):
        c = alphabet.index(prime[t]) if t < len(prime) else rng.choice(vocab, p=probs)
        if t >= len(prime):
            out.append(alphabet[c])
        z, *finals = f({"x0": np.array([c]), "y0": np.array([0]), **state})
        state = dict(zip(carried, finals))
        z = z[0].astype(np.float64) / args.temperature
        probs = np.exp(z - z.max())
        probs /= probs.sum()
    return "".join(out)


def plot_losses(results: dict, unigram: float, path: Path) -> None:
    """Training loss per character of each cell, with the unigram entropy as a line."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for cell, r in results.items():
        ax.plot(r["losses"], label=f"{cell.upper()} (held-out {r['held_out_loss']:.2f})")
    ax.axhline(unigram, color="gray", linestyle="--", label=f"unigram entropy {unigram:.2f}")
    ax.set_xlabel("training window (truncated BPTT step)")
    ax.set_ylabel("loss, nats per character")
    ax.legend()
    save_figure(fig, path)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", nargs="+", default=["rnn", "lstm", "gru"],
                   choices=["rnn", "lstm", "gru"])
    p.add_argument("--steps", type=int, default=300, help="training windows per model")
    p.add_argument("--window", type=int, default=16, help="T: characters per unrolled window")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch", type=int, default=32, help="streams read side by side")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=OUTPUT, help="folder for the loss plot")
    args = p.parse_args(argv)

    text, alphabet, ids = load_text()
    split = int(0.9 * len(ids))
    train_ids, held_out = ids[:split], ids[split:]
    h1 = unigram_entropy(train_ids, len(alphabet))
    print(f"text: {TEXT.name}, {len(text)} characters, {len(alphabet)} distinct; "
          f"unigram entropy {h1:.3f} nats/char (a model that ignores context)")
    print(f"models: one-hot -> {args.hidden} hidden -> softmax over {len(alphabet)}, "
          f"unrolled over T = {args.window}, batch {args.batch}, Adam lr {args.lr}, "
          f"clip 1.0, {args.steps} windows")
    results = {}
    for cell in args.cells:
        step, losses, compile_s, train_s = train(cell, train_ids, len(alphabet), args)
        last = float(np.mean(losses[-20:]))
        held = evaluate(step, cell, held_out, len(alphabet), args)
        text_out = sample(step, cell, alphabet, args)
        results[cell] = {"first_loss": losses[0], "train_loss": last, "held_out_loss": held,
                         "compile_s": compile_s, "train_s": train_s, "sample": text_out,
                         "losses": losses}
        print(f"\n{cell.upper()}: compile {compile_s:.2f} s, {args.steps} steps in "
              f"{train_s:.1f} s; loss/char {losses[0]:.3f} -> {last:.3f} (train, last 20), "
              f"held-out {held:.3f}; unigram entropy {h1:.3f}")
        print(f"  sample: {text_out!r}")
    path = args.out / "char_lm.png"
    plot_losses(results, h1, path)
    print(f"\nloss curves: {path}")
    return {"unigram_entropy": h1, "models": results, "image": path}


if __name__ == "__main__":
    main()
