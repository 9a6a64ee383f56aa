"""JIT compile time, as its own benchmarks (never mixed into the kernel timings).

* ``test_compile_family[<module>]``: the entry points of one ``kernels`` module that the kinds'
  warm-up compiled are compiled afresh once per round, for the same signatures, together with
  every njit helper they call (in any ``kernels`` module): each round clones the kernels'
  namespaces with new dispatchers (same Python functions, no on-disk cache), so nothing is
  reused from an earlier compile or from numba's cache. This is what a process with an empty
  cache pays for the family. ``extra_info``: entry points and signatures compiled.
* ``test_worker_start_cached`` / ``test_worker_start_cold``: a fresh interpreter importing every
  kind and running its ``warmup()`` — what every sweep worker pays — with numba's on-disk cache
  as it is (cached) and with an empty cache directory (cold: compile everything; only with
  ``KPBENCH_BENCH_COLD=1``, as one round takes minutes).

All of these are outside the quick subset (``kpbench bench --quick``).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FunctionType, ModuleType

import numba
import pytest
from numba.core.registry import CPUDispatcher

import kernels

REPO = Path(__file__).resolve().parents[1]
FAMILIES = sorted(m.name for m in pkgutil.iter_modules(kernels.__path__)
                  if not m.name.startswith("_"))
WORKER_START = (
    "from harness.kinds import all_kinds\n"
    "for kind in all_kinds().values():\n"
    "    kind.warmup()\n"
)


def _kernel_modules() -> dict[str, ModuleType]:
    found = {}
    for name in FAMILIES:
        try:
            found[name] = importlib.import_module(f"kernels.{name}")
        except Exception:  # a broken module shows up in its own tests
            continue
    return found


@pytest.fixture(scope="session")
def warmed_signatures() -> dict[str, list[tuple[str, list]]]:
    """Run every kind's warm-up, then snapshot {module: [(function name, signatures)]}."""
    from harness.kinds import all_kinds

    for kind in all_kinds().values():
        kind.warmup()
    return {
        name: [(attr, list(obj.signatures)) for attr, obj in vars(module).items()
               if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == module.__name__
               and obj.signatures]
        for name, module in _kernel_modules().items()
    }


def fresh_universe() -> dict[str, dict]:
    """Cloned globals of every kernels module, each njit function replaced by a new dispatcher
    (no overloads, no cache) whose Python function sees the cloned globals."""
    modules = {m.__name__: m for m in _kernel_modules().values()}
    clones = {name: dict(vars(m)) for name, m in modules.items()}
    fresh: dict[int, CPUDispatcher] = {}
    for g in clones.values():
        for obj in list(g.values()):
            if (isinstance(obj, CPUDispatcher) and id(obj) not in fresh
                    and obj.py_func.__module__ in clones):
                f = obj.py_func
                clone = FunctionType(f.__code__, clones[f.__module__], f.__name__,
                                     f.__defaults__, f.__closure__)
                clone.__kwdefaults__ = f.__kwdefaults__
                options = {k: v for k, v in obj.targetoptions.items()
                           if k not in ("cache", "nopython")}
                fresh[id(obj)] = numba.njit(**options)(clone)
    for g in clones.values():
        for key, obj in list(g.items()):
            if id(obj) in fresh:
                g[key] = fresh[id(obj)]
    return clones


@pytest.mark.parametrize("family", FAMILIES)
def test_compile_family(benchmark, warmed_signatures, family: str) -> None:
    entries = warmed_signatures.get(family, [])
    if not entries:
        pytest.skip(f"kernels.{family}: no numba function compiled by any kind's warmup()")

    def setup() -> tuple[tuple, dict]:
        return (fresh_universe()[f"kernels.{family}"],), {}

    def compile_all(namespace: dict) -> None:
        for attr, sigs in entries:
            for sig in sigs:
                namespace[attr].compile(sig)

    benchmark.pedantic(compile_all, setup=setup, rounds=3, iterations=1, warmup_rounds=0)
    benchmark.extra_info["entry_points"] = len(entries)
    benchmark.extra_info["signatures"] = sum(len(s) for _, s in entries)


def _start_worker(cache_dir: str | None) -> None:
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    subprocess.run([sys.executable, "-c", WORKER_START], cwd=REPO, env=env, check=True)


def _kinds_present() -> None:
    from harness.kinds import all_kinds

    if not all_kinds():
        pytest.skip("no experiment kinds installed")


def test_worker_start_cached(benchmark) -> None:
    _kinds_present()
    _start_worker(None)  # fill the on-disk cache
    benchmark.pedantic(_start_worker, args=(None,), rounds=3, iterations=1)


@pytest.mark.skipif(os.environ.get("KPBENCH_BENCH_COLD") != "1",
                    reason="several minutes on 2 cores; set KPBENCH_BENCH_COLD=1 to run")
def test_worker_start_cold(benchmark) -> None:
    _kinds_present()

    def fresh_dir() -> tuple[tuple, dict]:
        return (tempfile.mkdtemp(prefix="kpbench-numba-cold-"),), {}

    benchmark.pedantic(_start_worker, setup=fresh_dir, rounds=1, iterations=1)
