"""`--executor dask-local --workers N`: a Dask LocalCluster of N worker processes on this machine.

The same task path as `--executor dask` (harness.executor_dask): one single-threaded worker
process per `--workers` (default: the usable cores), each warming the JIT once; a killed worker
is restarted by its nanny and its in-flight points run again. Worker memory limits are off (the
config's memory check already bounds the largest point times the workers). The cluster lives
for one sweep (its dashboard, if bokeh is installed, is on a random port).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

from harness.executor_dask import check_workers, require_distributed, run_on_client
from harness.machine import available_cores


class DaskLocalExecutor:
    """A throw-away Dask LocalCluster with one process per worker."""

    name: ClassVar[str] = "dask-local"
    help: ClassVar[str] = "a Dask LocalCluster on this machine; --workers N processes"

    def __init__(self, workers: int | None = None):
        self.workers = workers or available_cores()

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        """dask-local uses only the common --workers option."""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DaskLocalExecutor:
        require_distributed("--executor dask-local")
        return cls(getattr(args, "workers", None))

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any],
                      setup: Callable[[], None]) -> Iterator[Any]:
        distributed = require_distributed("--executor dask-local")
        cluster = distributed.LocalCluster(
            n_workers=max(1, min(self.workers, len(items))), threads_per_worker=1,
            processes=True, dashboard_address=":0", memory_limit=0,
            silence_logs=logging.ERROR)
        try:
            client = distributed.Client(cluster, set_as_default=False)
            try:
                check_workers(client, "--executor dask-local")
                yield from run_on_client(client, fn, items, setup)
            finally:
                client.close()
        finally:
            cluster.close()


EXECUTOR = DaskLocalExecutor
