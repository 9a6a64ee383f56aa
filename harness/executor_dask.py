"""`--executor dask --scheduler tcp://HOST:8786`: run sweep points on an existing Dask cluster.

Each Dask worker process warms the JIT once (`setup()` runs before its first task of a given
set-up and is remembered for the worker's lifetime), so warm-up is never timed as a point. Results
come back as they finish and the sweep persists each one at once; a worker lost mid-run costs
only its in-flight points, which Dask reschedules on the surviving (or restarted) workers. When a
task has killed `distributed.scheduler.allowed-failures` workers in a row the run stops as
`failed` with every finished point kept, and `kpbench run ... --resume` finishes it.

Workers must run the same kpbench checkout or version as the client (`pip install -e .` on
every worker machine); numba kernels hold the GIL, so start workers with `--nthreads 1` and as
many `--nworkers` as cores. Dask is optional: `pip install 'kpbench[dask]'`.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import pickle
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

from harness.errors import UserError
from harness.executors import WorkerLost

INSTALL_HINT = "pip install 'kpbench[dask]'"
CONNECT_TIMEOUT_S = 10

_warmed: set[str] = set()
_warm_lock = threading.Lock()


def require_distributed(flag: str) -> Any:
    """The `distributed` module, or a one-line UserError telling how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise UserError(f"{flag}: expected Dask to be installed ({INSTALL_HINT}), "
                        f"got ImportError: {exc}") from None
    return distributed


def _call_warm(fn: Callable[[Any], Any], setup: Callable[[], None], token: str,
               item: Any) -> Any:
    """Run in a Dask worker: `setup()` once per worker process and token, then `fn(item)`."""
    if token not in _warmed:
        with _warm_lock:
            if token not in _warmed:
                setup()
                _warmed.add(token)
    return fn(item)


def _worker_facts() -> dict:
    """What a worker runs (checked against the client before a sweep)."""
    import harness

    return {"kpbench": harness.__version__, "python": sys.version.split()[0]}


def check_workers(client: Any, where: str) -> None:
    """UserError when a worker cannot import kpbench; a warning when its version differs."""
    try:
        facts = client.run(_worker_facts)
    except Exception as exc:
        raise UserError(f"{where}: expected Dask workers that can import kpbench "
                        f"(pip install -e . on every worker), got {type(exc).__name__}: "
                        f"{exc}") from None
    mine = _worker_facts()
    for addr, theirs in facts.items():
        if theirs != mine:
            print(f"kpbench: warning: Dask worker {addr} runs {theirs}, this client {mine}; "
                  "results may differ", file=sys.stderr)


def run_on_client(client: Any, fn: Callable[[Any], Any], items: Sequence[Any],
                  setup: Callable[[], None]) -> Iterator[Any]:
    """Submit every item, yield results as they finish; cancel what is left on early exit."""
    from distributed import as_completed

    token = hashlib.blake2b(pickle.dumps(setup), digest_size=12).hexdigest()
    task = functools.partial(_call_warm, fn, setup, token)
    futures = client.map(task, list(items), pure=False)
    finished = False
    try:
        for future in as_completed(futures, loop=client.loop):
            if future.status == "error":
                exc = future.exception()
                if type(exc).__name__ == "KilledWorker":
                    raise WorkerLost("Dask workers died running a point (killed, out of memory "
                                     f"or crashed): {exc}") from exc
                raise RuntimeError(f"Dask task failed: {type(exc).__name__}: {exc}") from exc
            if future.status == "cancelled":
                raise WorkerLost("Dask cancelled a point (scheduler restarted or lost?)")
            result = future.result()
            future.release()
            yield result
        finished = True
    finally:
        if not finished:
            client.cancel(futures, force=True)


def connect(address: str, flag: str = "--scheduler") -> Any:
    """A distributed.Client connected to `address`, or a one-line UserError."""
    distributed = require_distributed("--executor dask")
    try:
        return distributed.Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise UserError(f"{flag}: {address}: expected a reachable Dask scheduler, got "
                        f"{type(exc).__name__}: {exc}") from None


class DaskExecutor:
    """Points run on the workers of an existing Dask cluster (one task per point)."""

    name: ClassVar[str] = "dask"
    help: ClassVar[str] = "an existing Dask cluster; needs --scheduler"

    def __init__(self, address: str, workers: int = 1):
        self.address = address
        self.workers = workers

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--scheduler", metavar="ADDRESS", default=None,
                           help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 "
                                "(start it with `dask scheduler`, workers with "
                                "`dask worker tcp://10.0.0.5:8786 --nthreads 1`)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DaskExecutor:
        require_distributed("--executor dask")
        address = getattr(args, "scheduler", None)
        if not address:
            raise UserError("--scheduler: expected the address of a Dask scheduler with "
                            "--executor dask (e.g. tcp://HOST:8786), got none")
        client = connect(address)
        try:
            nthreads = client.nthreads()
            if nthreads:
                check_workers(client, f"--scheduler {address}")
            else:
                print(f"kpbench: warning: no Dask workers at {address} yet; points wait for "
                      "workers to join", file=sys.stderr)
        finally:
            client.close()
        return cls(address, max(1, sum(nthreads.values())))

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any],
                      setup: Callable[[], None]) -> Iterator[Any]:
        client = connect(self.address)
        try:
            yield from run_on_client(client, fn, items, setup)
        finally:
            client.close()


EXECUTOR = DaskExecutor
