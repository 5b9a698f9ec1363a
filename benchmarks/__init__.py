"""Side-by-side benchmarks of graphc's generated code against hand-written NumPy, PyTorch
eager and torch.compile. Run from the repository root: `python -m benchmarks.<name>`."""
