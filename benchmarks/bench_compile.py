"""JIT compile time, as its own benchmarks (never mixed into the kernel timings).

* ``test_compile_family[<module>]``: every numba dispatcher of one ``kernels`` module that the
  kinds' warm-up compiled is compiled afresh, once per round, for the same signatures: a new
  dispatcher over the same Python function, without the on-disk cache. Callees in other
  dispatchers are already compiled (as in any warm process), so the family total counts each
  function body once. ``extra_info``: functions and signatures compiled.
* ``test_worker_start_cached`` / ``test_worker_start_cold``: a fresh interpreter importing every
  kind and running its ``warmup()`` — what every sweep worker pays — with numba's on-disk cache
  as it is (cached) and with an empty cache directory (cold: compile everything).

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


@pytest.fixture(scope="session")
def warmed_signatures() -> dict[str, list[tuple[CPUDispatcher, list]]]:
    """Run every kind's warm-up, then snapshot {module: [(dispatcher, signatures)]}."""
    from harness.kinds import all_kinds

    for kind in all_kinds().values():
        kind.warmup()
    found: dict[str, list[tuple[CPUDispatcher, list]]] = {}
    for name in FAMILIES:
        try:
            module = importlib.import_module(f"kernels.{name}")
        except Exception:  # a broken module shows up in its own tests
            continue
        found[name] = [
            (obj, list(obj.signatures)) for obj in vars(module).values()
            if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == module.__name__
            and obj.signatures
        ]
    return found


def _fresh_copies(pairs: list[tuple[CPUDispatcher, list]]) -> tuple[tuple, dict]:
    options = {}
    copies = []
    for disp, sigs in pairs:
        options = {k: v for k, v in disp.targetoptions.items() if k not in ("cache", "nopython")}
        copies.append((numba.njit(**options)(disp.py_func), sigs))
    return (copies,), {}


def _compile_all(copies: list[tuple[CPUDispatcher, list]]) -> int:
    for disp, sigs in copies:
        for sig in sigs:
            disp.compile(sig)
    return len(copies)


@pytest.mark.parametrize("family", FAMILIES)
def test_compile_family(benchmark, warmed_signatures, family: str) -> None:
    pairs = warmed_signatures.get(family, [])
    if not pairs:
        pytest.skip(f"kernels.{family}: no numba function compiled by any kind's warmup()")
    benchmark.pedantic(_compile_all, setup=lambda: _fresh_copies(pairs), rounds=3,
                       iterations=1, warmup_rounds=0)
    benchmark.extra_info["functions"] = len(pairs)
    benchmark.extra_info["signatures"] = sum(len(s) for _, s in pairs)


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


def test_worker_start_cold(benchmark) -> None:
    _kinds_present()

    def fresh_dir() -> tuple[tuple, dict]:
        return (tempfile.mkdtemp(prefix="kpbench-numba-cold-"),), {}

    benchmark.pedantic(_start_worker, setup=fresh_dir, rounds=1, iterations=1)
