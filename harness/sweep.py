"""Sweep: turn an Experiment into seeded tasks, run them on an executor, persist each result.

A task's seed is derived from (experiment seed, kind, the point's parameters, repeat) — never its
position — so a point's result does not depend on grid order, worker count or resumption.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from harness.config import Experiment
from harness.executors import WORKER_INDEX_ENV, Executor
from harness.kinds import get_kind
from harness.store import RESERVED, RunStore

SEED_BITS = 32  # seeds fit numpy's legacy and numba's np.random.seed (0 <= seed < 2**32)
MAX_LOGGED_ERRORS = 20


@dataclass(frozen=True)
class Task:
    """One (point, repeat) to run."""

    key: str  # stable id of (part, kind, params, repeat): the journal file name
    kind: str
    part: int
    point: int  # index of the point within its part's grid
    repeat: int
    params: dict
    seed: int


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def point_seed(experiment_seed: int, kind: str, params: dict, repeat: int) -> int:
    """Seed of one run of a point: blake2b of (experiment seed, kind, sorted params, repeat)."""
    blob = _canonical([experiment_seed, kind, sorted(params.items()), repeat])
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big") % (1 << SEED_BITS)


def tasks_for(experiment: Experiment) -> list[Task]:
    """Every (point, repeat) of the experiment, in canonical order."""
    tasks = []
    for part in experiment.parts:
        for index, params in enumerate(part.points):
            for repeat in range(experiment.repeats):
                blob = _canonical([part.index, part.kind, sorted(params.items()), repeat])
                key = hashlib.blake2b(blob, digest_size=10).hexdigest()
                tasks.append(Task(key=key, kind=part.kind, part=part.index, point=index,
                                  repeat=repeat, params=dict(params),
                                  seed=point_seed(experiment.seed, part.kind, params, repeat)))
    return tasks


def largest_first(tasks: list[Task]) -> list[Task]:
    """Order tasks by the kinds' memory estimate, largest first (grid order among equals), so
    the biggest points start early instead of running alone at the end of the sweep."""
    def size(task: Task) -> int:
        estimate = get_kind(task.kind).memory_bytes
        return int(estimate(dict(task.params))) if estimate is not None else 0

    return sorted(tasks, key=lambda t: -size(t))


_warmup_errors: dict[str, str] = {}


def warm_order(kinds: tuple[str, ...], worker: int) -> tuple[str, ...]:
    """The kinds rotated to start at ``worker``'s share: with an empty numba cache, worker 0
    compiles the first kind while worker 1 compiles the second, and each then loads what the
    other wrote to the on-disk cache instead of compiling everything itself."""
    if not kinds:
        return kinds
    k = worker % len(kinds)
    return kinds[k:] + kinds[:k]


def warm_kinds(kinds: tuple[str, ...]) -> None:
    """Worker set-up: JIT-compile every used kind once (errors are reported per task), starting
    at this worker's share of the kinds (:func:`warm_order`, ``KPBENCH_WORKER_INDEX``)."""
    worker = int(os.environ.get(WORKER_INDEX_ENV, "0") or 0)
    for name in warm_order(tuple(kinds), worker):
        try:
            get_kind(name).warmup()
        except Exception as exc:
            _warmup_errors[name] = f"warmup failed: {type(exc).__name__}: {exc}"


def _scalar(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()  # numpy scalar -> Python scalar
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value
    raise TypeError(f"expected a scalar (int, float, str, bool), got {type(value).__name__}")


def run_task(task: Task, calibration: dict) -> dict:
    """Run one task in a worker: the journal row, or {'key', 'error', 'traceback'}."""
    try:
        if task.kind in _warmup_errors:
            raise RuntimeError(_warmup_errors[task.kind])
        kind = get_kind(task.kind)
        start = time.perf_counter()
        raw = kind.run_point(dict(task.params), task.seed, dict(calibration))
        wall = time.perf_counter() - start
        if not isinstance(raw, dict):
            raise TypeError(f"run_point returned {type(raw).__name__}, expected a dict")
        metrics = {}
        for name, value in raw.items():
            if name in RESERVED or name in task.params:
                raise ValueError(f"metric {name!r} collides with a column of the points table")
            try:
                metrics[str(name)] = _scalar(value)
            except TypeError as exc:
                raise TypeError(f"metric {name!r}: {exc}") from None
    except Exception as exc:
        return {"key": task.key, "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc()}
    return {"key": task.key, "kind": task.kind, "part": task.part, "point": task.point,
            "repeat": task.repeat, "seed": task.seed, "params": task.params,
            "metrics": metrics, "wall_s": wall}


def describe(task: Task) -> str:
    """'kind part 1 point 3 repeat 0 (services=100, mode='ipvs')'."""
    shown = ", ".join(f"{k}={v!r}" for k, v in task.params.items())
    return f"{task.kind} part {task.part} point {task.point} repeat {task.repeat} ({shown})"


@dataclass
class Outcome:
    """How a sweep ended."""

    status: str  # complete | failed | interrupted
    done: int
    total: int
    errors: list[dict]


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_sweep(experiment: Experiment, store: RunStore, executor: Executor,
              progress: bool = True) -> Outcome:
    """Run every task the store has not finished; persist rows as they come; set the status."""
    tasks = tasks_for(experiment)
    done = store.done_keys()
    todo = largest_first([t for t in tasks if t.key not in done])
    by_key = {t.key: t for t in todo}
    errors: list[dict] = []
    status = "complete"
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), unit="pt", file=sys.stderr,
               desc=experiment.name, disable=not progress, dynamic_ncols=True, smoothing=0.1)
    try:
        if todo:
            fn = functools.partial(run_task, calibration=experiment.calibration)
            setup = functools.partial(warm_kinds, tuple(experiment.kinds))
            if progress:
                bar.write("kpbench: warming up the JIT in each worker (after a fresh clone or a "
                          "kernel change this compiles the kernels: minutes on 2 cores; later "
                          "runs load them from numba's cache)", file=sys.stderr)
            results = executor.map_unordered(fn, todo, setup)
            try:
                for result in results:
                    task = by_key[result["key"]]
                    if "error" in result:
                        if not errors:
                            bar.write(f"kpbench: point failed: {describe(task)}: "
                                      f"{result['error']}", file=sys.stderr)
                        errors.append({"point": describe(task), "error": result["error"],
                                       "traceback": result["traceback"]})
                    else:
                        store.add(result)
                    bar.update(1)
            finally:
                close = getattr(results, "close", None)
                if close is not None:
                    close()  # stop outstanding work now (Ctrl-C, failure), not at GC time
    except KeyboardInterrupt:
        status = "interrupted"
    except Exception as exc:  # an executor failure (e.g. a worker killed): keep what finished
        errors.append({"point": None, "error": f"{type(exc).__name__}: {exc}",
                       "traceback": traceback.format_exc()})
    finally:
        bar.close()
        signal.signal(signal.SIGTERM, previous)
    if errors and status == "complete":
        status = "failed"
    if len(errors) > MAX_LOGGED_ERRORS:
        errors = errors[:MAX_LOGGED_ERRORS] + [
            {"point": None, "error": f"... and {len(errors) - MAX_LOGGED_ERRORS} more failed"}]
    store.finish(status, errors)
    return Outcome(status=status, done=len(store.done_keys()), total=len(tasks), errors=errors)


def eta_hint(outcome: Outcome) -> str:
    """'12 of 40 points' style progress summary."""
    pct = 100 * outcome.done / outcome.total if outcome.total else 100.0
    return f"{outcome.done} of {outcome.total} point runs ({math.floor(pct)}%)"
