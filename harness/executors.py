"""Executors run sweep tasks somewhere and yield their outcomes as they finish.

An executor is a small class with `name`, `help`, `add_arguments(group)` (its own CLI options),
`from_args(args)` and `map_unordered(fn, items, setup)`. `LocalExecutor` (processes on this
machine) is built in; another executor is added as a module `harness/executor_<name>.py` that
exports `EXECUTOR = <class>` and is discovered automatically (selected with `--executor <name>`).
`map_unordered` must call `setup()` once in every worker before its first item (JIT warm-up), and
must stop all outstanding work when the caller stops iterating (Ctrl-C, failure). Local workers
are numbered in the environment variable ``KPBENCH_WORKER_INDEX`` (0, 1, ...), which the warm-up
uses to compile different kinds first in different workers.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import os
import pkgutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, ClassVar, Protocol

from harness.errors import UserError
from harness.machine import available_cores


class Executor(Protocol):
    """What the sweep needs from an executor."""

    name: ClassVar[str]
    help: ClassVar[str]
    workers: int

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None: ...

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Executor: ...

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any],
                      setup: Callable[[], None]) -> Iterator[Any]: ...


class WorkerLost(RuntimeError):
    """A worker died without returning (killed, out of memory, crashed)."""


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)  # the sweep process died (e.g. SIGKILL): do not linger as an orphan


WORKER_INDEX_ENV = "KPBENCH_WORKER_INDEX"
"""Set in each local worker process to its number (0, 1, ...) before ``setup()`` runs."""


def _local_worker_init(setup: Callable[[], None], parent: int, counter: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    with counter.get_lock():
        os.environ[WORKER_INDEX_ENV] = str(counter.value)
        counter.value += 1
    setup()


class LocalExecutor:
    """Processes on this machine (default: one per available core); 1 worker runs in-process."""

    name: ClassVar[str] = "local"
    help: ClassVar[str] = "worker processes on this machine"

    def __init__(self, workers: int | None = None):
        self.workers = workers or available_cores()

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        """The local executor uses only the common --workers option."""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LocalExecutor:
        return cls(getattr(args, "workers", None))

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any],
                      setup: Callable[[], None]) -> Iterator[Any]:
        workers = max(1, min(self.workers, len(items)))
        if workers == 1:
            setup()
            for item in items:
                yield fn(item)
            return
        ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                   initializer=_local_worker_init,
                                   initargs=(setup, os.getpid(), ctx.Value("i", 0)))
        pending = {pool.submit(fn, item) for item in items}
        finished = False
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    exc = future.exception()
                    if exc is not None:
                        raise WorkerLost("a worker process died (killed, out of memory or "
                                         f"crashed): {exc}") from exc
                    yield future.result()
            finished = True
        finally:
            procs = list((pool._processes or {}).values())
            pool.shutdown(wait=finished, cancel_futures=True)
            if not finished:
                for proc in procs:
                    if proc.is_alive():
                        proc.terminate()
                for proc in procs:
                    proc.join(timeout=5)


_EXECUTORS: dict[str, type] = {LocalExecutor.name: LocalExecutor}
_BROKEN: dict[str, str] = {}
_discovered = False


def executors() -> dict[str, type]:
    """Every executor class by name: built-in ones and `harness/executor_*.py` plugins."""
    global _discovered
    if not _discovered:
        _discovered = True
        import harness

        for info in pkgutil.iter_modules(harness.__path__):
            if info.name.startswith("executor_"):
                try:
                    module = importlib.import_module(f"harness.{info.name}")
                except Exception as exc:  # a broken plugin must not break the CLI
                    _BROKEN[info.name.removeprefix("executor_")] = f"{type(exc).__name__}: {exc}"
                    continue
                cls = getattr(module, "EXECUTOR", None)
                if cls is not None:
                    _EXECUTORS[cls.name] = cls
    return dict(_EXECUTORS)


def make_executor(args: argparse.Namespace) -> Executor:
    """The executor named by `args.executor`, configured from its CLI options."""
    name = getattr(args, "executor", "local") or "local"
    classes = executors()
    if name not in classes and name in _BROKEN:
        raise UserError(f"--executor: {name}: expected an executor that imports, "
                        f"got {_BROKEN[name]}")
    if name not in classes:
        raise UserError(f"--executor: expected one of {', '.join(classes)}, got {name!r}")
    return classes[name].from_args(args)
