"""kernels.numba_cache.depend_on: a cached kernel that calls an njit function of another file is
recompiled when that file changes (numba alone would keep running the stale machine code)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

USER = textwrap.dedent("""
    from numba import njit

    import dep_mod
    from kernels.numba_cache import depend_on

    depend_on(__file__, dep_mod)


    @njit(cache=True)
    def g(x):
        return dep_mod.f(x) + 1
""")


def _dep(value: int) -> str:
    return f"from numba import njit\n\n\n@njit(cache=True)\ndef f(x):\n    return x * {value}\n"


def _run(tmp: Path, env_extra: dict) -> tuple[int, int]:
    code = "import user_mod; print(user_mod.g(10), len(user_mod.g.stats.cache_hits))"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(PYTHONPATH=f"{tmp}{os.pathsep}{REPO}", **env_extra)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp, check=True,
                         capture_output=True, text=True).stdout.split()
    return int(out[0]), int(out[1])


@pytest.mark.parametrize("where", ["in-tree", "NUMBA_CACHE_DIR"])
def test_a_change_in_a_dependency_recompiles_the_cached_kernel(tmp_path, where):
    src = tmp_path / "src"
    src.mkdir()
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")} if where != "in-tree" else {}
    (src / "user_mod.py").write_text(USER)
    (src / "dep_mod.py").write_text(_dep(2))
    assert _run(src, env) == (21, 0)  # compiled
    assert _run(src, env) == (21, 1)  # loaded from the cache
    (src / "dep_mod.py").write_text(_dep(3))
    assert _run(src, env) == (31, 0)  # the dependency changed: recompiled, not the stale 21
    assert _run(src, env) == (31, 1)
    cached = list((tmp_path / "cache").rglob("*.nbi")) if env else list(src.rglob("*.nbi"))
    assert any("user_mod" in p.name for p in cached)
