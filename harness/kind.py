"""The plugin contract every experiment kind implements (see briefs/COMMON.md).

A kind is a module `harness/kinds/<name>.py` exporting `KIND = Kind(...)`. The runner never names
kinds: it finds them through `harness.kinds` and talks to them only through this contract.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Param:
    """One parameter a point may carry (in `[grid]` or `[fixed]`)."""

    name: str
    type: type  # int | float | str | bool
    default: Any = None  # None = required
    help: str = ""
    choices: tuple | None = None  # allowed values (e.g. scheduler names)
    min: float | None = None  # inclusive bounds
    max: float | None = None


@dataclass(frozen=True)
class Figure:
    """A PNG the kind's report wrote into the plots dir, with one sentence saying what it shows."""

    filename: str
    caption: str


@dataclass
class Report:
    """What a kind's report returns: figures, a small headline table, and data-backed findings."""

    figures: list[Figure]
    headline: pd.DataFrame
    findings: list[str]


@dataclass(frozen=True)
class Kind:
    """A model family an experiment can run (e.g. dataplane scaling, scheduler fairness)."""

    name: str
    summary: str
    params: tuple[Param, ...]
    run_point: Callable[[dict, int, dict], dict]  # (params, seed, calibration) -> scalar metrics
    warmup: Callable[[], None]  # JIT-compile kernels on tiny inputs, once per worker process
    report: Callable[[pd.DataFrame, Path], Report]  # (points of this kind, plots dir) -> Report
    # per-point cross-field check -> (key, expected) or None
    check: Callable[[dict], tuple[str, str] | None] | None = None
    memory_bytes: Callable[[dict], int] | None = None  # peak-memory estimate of one point

    def param(self, name: str) -> Param | None:
        """The parameter called `name`, or None."""
        for p in self.params:
            if p.name == name:
                return p
        return None
