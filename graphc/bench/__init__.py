"""`graphc bench`: side-by-side timings of graphc against NumPy by hand, eager PyTorch and
torch.compile on a few workloads; a table, a JSON record and a bar chart."""
from .device import Device
from .runner import BenchConfig, plot, report, run
from .workloads import NAMES, MismatchError

__all__ = ["BenchConfig", "Device", "MismatchError", "NAMES", "plot", "report", "run"]
