"""kpbench harness: configs, sweeps, executors, results store, reports and the `kpbench` CLI."""

__version__ = "0.1.0"
