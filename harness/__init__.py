"""kpbench harness: configs, sweeps, executors, results store, reports and the `kpbench` CLI."""

__version__ = "0.1.0"

from harness.store import load_run as load_run  # noqa: E402 - public API for notebooks
