"""Results store: `results/<experiment>/<run-id>/` with config, manifest, journal and points.

Layout of a run folder:
    config.toml      the config file as given          resolved.json  config after --set, grids
    manifest.json    provenance + status (sacred-like)                 expanded, calibration
    journal/         one `<key>.json` per finished (point, repeat), written to a temporary file
                     and renamed into place, so a run killed at any moment loses nothing finished
    points.parquet   the journal consolidated (atomically) into one table, canonical row order
    plots/, report.md written by `kpbench report`

`load_run(path) -> (DataFrame, manifest)` is the public way to read a run (notebooks, reports).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from harness.config import Experiment
from harness.errors import UserError
from harness.kind import Kind
from harness.machine import available_cores, cpu_model

ROW_HEAD = ("kind", "part", "point")
RESERVED = ROW_HEAD + ("repeat", "seed", "wall_s")
PACKAGES = ("kpbench", "numpy", "numba", "llvmlite", "pandas", "pyarrow", "matplotlib", "tqdm")
CONSOLIDATE_EVERY_S = 2.0


def now() -> str:
    """UTC timestamp, ISO 8601."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so readers (and a crash) see the old or the new file, never half."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=1, default=str) + "\n")


def git_state(repo: Path) -> dict:
    """Commit and dirty flag of the repository holding the harness (None outside git)."""
    def git(*cmd: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(repo), *cmd], capture_output=True, text=True,
                                 timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def provenance() -> dict:
    """Code, software and machine facts for the manifest."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "git": git_state(Path(__file__).resolve().parents[1]),
        "python": sys.version.split()[0],
        "packages": versions,
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": available_cores(),
        "hostname": platform.node(),
    }


def rows_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows -> table in canonical order: rows by (part, point, repeat); columns kind, part,
    point, parameters, repeat, seed, metrics, wall_s (parameters and metrics by first use)."""
    rows = sorted(rows, key=lambda r: (r["part"], r["point"], r["repeat"]))
    params: dict[str, None] = {}
    metrics: dict[str, None] = {}
    for row in rows:
        params.update(dict.fromkeys(row["params"]))
        metrics.update(dict.fromkeys(row["metrics"]))
    flat = [{**{k: row[k] for k in ROW_HEAD}, **row["params"], "repeat": row["repeat"],
             "seed": row["seed"], **row["metrics"], "wall_s": row["wall_s"]} for row in rows]
    columns = [*ROW_HEAD, *params, "repeat", "seed", *metrics, "wall_s"]
    return pd.DataFrame(flat, columns=columns)


class RunStore:
    """One run folder, opened for writing by the sweep (holds an exclusive lock)."""

    def __init__(self, path: Path, manifest: dict):
        self.path = path
        self.journal = path / "journal"
        self.manifest = manifest
        self.rows: dict[str, dict] = {}
        self._last_flush = 0.0
        self._lock = open(path / ".lock", "a")  # noqa: SIM115 - held for the store's lifetime
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise UserError(f"{path}: expected a run folder no other kpbench process is using, "
                            "got one that is locked (is that run still going?)") from None

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def create(cls, out: Path, experiment: Experiment, invocation: dict) -> RunStore:
        """Make a fresh run folder `out/<experiment>/<run-id>/` and write its config files."""
        base = out / experiment.name
        try:
            base.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--out: {out}: expected a writable folder, got {exc.strerror}") \
                from None
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        for n in range(1, 1000):
            path = base / (stamp if n == 1 else f"{stamp}-{n}")
            try:
                path.mkdir()
                break
            except FileExistsError:
                continue
        else:
            raise UserError(f"--out: {base}: expected room for a new run folder, got 999 taken")
        (path / "journal").mkdir()
        with contextlib.suppress(OSError):
            shutil.copyfile(experiment.source, path / "config.toml")
        write_json(path / "resolved.json", experiment.resolved())
        manifest = {
            "experiment": experiment.name,
            "run_id": path.name,
            "status": "running",
            "fingerprint": experiment.fingerprint(),
            "config": str(experiment.source),
            "overrides": list(experiment.overrides),
            "calibration": experiment.calibration,
            "kinds": experiment.kinds,
            "start_time": now(),
            "end_time": None,
            "sessions": [],
            **provenance(),
        }
        store = cls(path, manifest)
        store.begin(invocation)
        return store

    @classmethod
    def reopen(cls, path: Path, invocation: dict) -> RunStore:
        """Open an unfinished run folder to finish it (`--resume`)."""
        store = cls(path, json.loads((path / "manifest.json").read_text()))
        store._load_journal()
        store.begin(invocation)
        return store

    def _load_journal(self) -> None:
        self.journal.mkdir(exist_ok=True)
        for tmp in [*self.journal.glob(".*"), *self.path.glob(".*.tmp*")]:
            tmp.unlink()  # half-written files of a killed run: their rename never happened
        for file in self.journal.glob("*.json"):
            try:
                row = json.loads(file.read_text())
            except ValueError:  # unreadable (e.g. lost in a power cut): run that point again
                print(f"kpbench: warning: {file} unreadable; its point will run again",
                      file=sys.stderr)
                file.unlink()
                continue
            self.rows[row["key"]] = row

    def begin(self, invocation: dict) -> None:
        self.manifest["status"] = "running"
        self.manifest["end_time"] = None
        self.manifest["sessions"].append({"start_time": now(), **invocation})
        self.flush(force=True)

    # -- writing -----------------------------------------------------------------------------
    def done_keys(self) -> set[str]:
        return set(self.rows)

    def add(self, row: dict) -> None:
        """Persist one finished (point, repeat) row, atomically, then consolidate now and then."""
        write_atomic(self.journal / f"{row['key']}.json", json.dumps(row))
        self.rows[row["key"]] = row
        self.flush()

    def flush(self, force: bool = False) -> None:
        """Consolidate the rows into points.parquet and refresh the manifest (atomically)."""
        if not force and time.monotonic() - self._last_flush < CONSOLIDATE_EVERY_S:
            return
        self._last_flush = time.monotonic()
        table = self.path / "points.parquet"
        tmp = self.path / f".points.parquet.tmp{os.getpid()}"
        rows_frame(list(self.rows.values())).to_parquet(tmp, index=False)
        os.replace(tmp, table)
        ordered = sorted(self.rows.values(), key=lambda r: (r["part"], r["point"], r["repeat"]))
        self.manifest["points_done"] = len(ordered)
        self.manifest["point_wall_s"] = [
            {"part": r["part"], "point": r["point"], "repeat": r["repeat"], "wall_s": r["wall_s"]}
            for r in ordered]
        metrics: dict[str, dict] = {}
        for r in ordered:
            metrics.setdefault(r["kind"], {}).update(dict.fromkeys(r["metrics"]))
        self.manifest["metrics"] = {k: list(v) for k, v in metrics.items()}
        self.manifest["total_point_wall_s"] = round(sum(r["wall_s"] for r in ordered), 6)
        write_json(self.path / "manifest.json", self.manifest)

    def finish(self, status: str, errors: list[dict] | None = None) -> None:
        """Record the final status (complete | failed | interrupted) and close the store."""
        self.manifest["status"] = status
        self.manifest["end_time"] = now()
        self.manifest["sessions"][-1]["end_time"] = self.manifest["end_time"]
        self.manifest["sessions"][-1]["status"] = status
        self.manifest["errors"] = errors or []
        self.flush(force=True)
        if status == "complete":
            shutil.rmtree(self.journal, ignore_errors=True)
        self._lock.close()


def latest_run(out: Path, experiment: Experiment) -> tuple[Path, dict] | None:
    """The newest run folder of this experiment made with the same config (fingerprint)."""
    base = out / experiment.name
    if not base.is_dir():
        return None
    for path in sorted(base.iterdir(), key=lambda p: p.name, reverse=True):
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except (OSError, ValueError):
            continue
        if manifest.get("fingerprint") == experiment.fingerprint():
            return path, manifest
    return None


def load_run(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """Read a run folder: (points table in canonical order, manifest dict).

    A run that did not complete is read from its journal, so every finished point is included.
    """
    path = Path(path)
    manifest_file = path / "manifest.json"
    if not manifest_file.is_file():
        raise UserError(f"{path}: expected a run folder holding manifest.json, got none")
    manifest = json.loads(manifest_file.read_text())
    journal = path / "journal"
    if journal.is_dir():
        rows = [json.loads(f.read_text()) for f in journal.glob("*.json")]
        return rows_frame(rows), manifest
    table = path / "points.parquet"
    if not table.is_file():
        raise UserError(f"{path}: expected points.parquet or journal/, got neither")
    return pd.read_parquet(table), manifest


def kind_frame(df: pd.DataFrame, kind: Kind, manifest: dict) -> pd.DataFrame:
    """The rows of one kind with only its columns: parameters (integer/boolean ones restored to
    their type when the table mixes kinds), repeat, seed, its metrics, wall_s."""
    sub = df[df["kind"] == kind.name].reset_index(drop=True)
    params = [p for p in kind.params if p.name in sub.columns]
    metrics = manifest.get("metrics", {}).get(kind.name)
    if metrics is None:
        metrics = [c for c in sub.columns if c not in RESERVED and kind.param(c) is None
                   and sub[c].notna().any()]
    columns = [*ROW_HEAD, *(p.name for p in params), "repeat", "seed",
               *(m for m in metrics if m in sub.columns), "wall_s"]
    sub = sub[columns].copy()
    for p in params:
        if p.type in (int, bool) and sub[p.name].notna().all():
            sub[p.name] = sub[p.name].astype("int64" if p.type is int else bool)
    return sub
