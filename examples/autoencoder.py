"""Autoencoder and denoising autoencoder on the 8x8 digits, as in the course:
encoder z = h(W x), decoder x' = h(W' z), loss ||x - x'||^2; the denoising one encodes
x~ = x + noise (a `gc.noise` node: drawn in the graph during training, the identity in
evaluation) and is still asked for the clean x. Both are then shown noisy test digits:
the denoising one should reconstruct the clean digit better. Saves an image grid.

    python examples/autoencoder.py [--epochs 60] [--code 64] [--noise 0.3] [--out DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import graphc as gc
from graphc.render import pyplot, save_figure

if __package__:
    from .digits_mlp import load_data
else:   # run as a file: its folder is first on sys.path
    from digits_mlp import load_data

OUTPUT = Path(__file__).resolve().parent / "output"


def build(code: int, noise_std: float, seed: int):
    """x (N, 64) -> [x + noise] -> sigmoid(linear code) -> sigmoid(linear 64); MSE to x."""
    name = "denoising_autoencoder" if noise_std else "autoencoder"
    g = gc.Graph(name, seed=seed)
    x = g.input("x", (gc.sym("N"), 64))
    seen = gc.noise(x, noise_std, name="x_noisy") if noise_std else x
    z = gc.sigmoid(gc.linear(seen, code, name="enc"), name="code")
    recon = gc.sigmoid(gc.linear(z, 64, name="dec"), name="recon")
    loss = gc.mse(recon, x, half=True, name="loss")
    return g, recon, loss


def train(code: int, noise_std: float, x_train, epochs: int, seed: int, progress: bool):
    g, recon, loss = build(code, noise_std, seed)
    step = gc.compile(g, loss, optimizer=gc.SGD(lr=2.0, momentum=0.9), backend="numpy")
    history = gc.Trainer(step).fit({"x": x_train}, epochs=epochs, batch_size=32, seed=seed,
                                   progress=progress)
    return step, step.function([recon]), history


def corrupt(x, std: float, seed: int):
    """Test-time corruption with the training noise's distribution (uniform, std `std`)."""
    rng = np.random.default_rng(seed)
    spread = std * np.sqrt(3)
    return (x + rng.uniform(-spread, spread, size=x.shape)).astype(np.float32)


def save_grid(rows: dict, path: Path) -> None:
    """One row of 8x8 images per entry of `rows` (title -> (n, 64) array)."""
    plt = pyplot()

    n = len(next(iter(rows.values())))
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.9, len(rows) * 1.05))
    for r, (title, images) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(np.clip(images[c].reshape(8, 8), 0, 1), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(title, rotation=0, ha="right", va="center", fontsize=8)
    save_figure(fig, path)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--code", type=int, default=64, help="code (hidden) units")
    p.add_argument("--noise", type=float, default=0.3, help="noise std (pixels in [0, 1])")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=OUTPUT)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    x_train, x_test, _, _ = load_data(args.seed)
    noisy_test = corrupt(x_test, args.noise, args.seed + 1)
    print(f"digits: {len(x_train)} train / {len(x_test)} test images, 64 -> {args.code} -> 64 "
          f"sigmoid, loss 1/2 mean squared error; test noise std {args.noise}")
    errors, recons = {}, {}
    for label, std in (("autoencoder", 0.0), ("denoising autoencoder", args.noise)):
        step, reconstruct, history = train(args.code, std, x_train, args.epochs, args.seed,
                                           not args.no_progress)
        clean_out, = reconstruct(x=x_test)
        noisy_out, = reconstruct(x=noisy_test)
        errors[label] = {"clean": float(np.mean((clean_out - x_test) ** 2)),
                         "noisy": float(np.mean((noisy_out - x_test) ** 2)),
                         "train_loss": history.loss[-1]}
        recons[label] = noisy_out
        print(f"{label:>22}: final train loss {history.loss[-1]:.4f}; test MSE to the clean "
              f"digit from clean input {errors[label]['clean']:.4f}, from noisy input "
              f"{errors[label]['noisy']:.4f}")
    print(f"{'noisy input itself':>22}: MSE to the clean digit "
          f"{float(np.mean((noisy_test - x_test) ** 2)):.4f}")
    path = args.out / "autoencoder.png"
    save_grid({"clean": x_test[:10], "noisy": noisy_test[:10],
               "AE(noisy)": recons["autoencoder"][:10],
               "DAE(noisy)": recons["denoising autoencoder"][:10]}, path)
    print(f"image grid (clean, noisy, both reconstructions of the noisy digit): {path}")
    return {"errors": errors, "image": path,
            "noisy_input_mse": float(np.mean((noisy_test - x_test) ** 2))}


if __name__ == "__main__":
    main()
