"""Shared pytest fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
TOY_SPEC = "toykind:KIND,toykind:KIND2"


@pytest.fixture
def toy_kinds(monkeypatch):
    """Register the toy kinds in this process and for subprocesses/workers (KPBENCH_EXTRA_KINDS)."""
    from toykind import KIND, KIND2

    from harness import kinds

    monkeypatch.setenv("KPBENCH_EXTRA_KINDS", TOY_SPEC)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(TESTS), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    kinds.register(KIND)
    kinds.register(KIND2)
    yield (KIND, KIND2)
    kinds.unregister(KIND.name)
    kinds.unregister(KIND2.name)


@pytest.fixture
def kpbench_cmd():
    """argv prefix running the CLI of this checkout in a subprocess."""
    return [sys.executable, "-m", "harness.cli"]
