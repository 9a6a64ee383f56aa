"""Experiment configs: TOML -> validated `Experiment` with its grid expanded into points.

A config is either single-kind (top-level `kind`, `[grid]`, `[fixed]`) or made of parts
(`[[part]]` tables, each with its own `kind`, `grid`, `fixed`), so one experiment can touch several
kinds. Grid values are lists, `{logspace = [lo, hi, count]}` (rounded to integers and de-duplicated
for integer parameters) or `{range = [lo, hi, step]}` (hi included). `--set key=value` overrides
any key (dotted; `part.N` is the N-th `[[part]]`, counting from 1); values are parsed as TOML,
falling back to a bare string. Every error is one line `FILE: KEY: expected ..., got ...`.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.kind import Kind, Param
from harness.kinds import all_kinds, broken_kinds
from harness.machine import available_memory_bytes, human_bytes

TOP_KEYS = ("name", "description", "kind", "seed", "repeats", "grid", "fixed", "report", "part")
PART_KEYS = ("kind", "grid", "fixed")
REPORT_KEYS = {"title": str, "auto": bool, "html": bool}
MAX_VALUES = 1_000_000
MAX_POINTS = 10_000_000
MAX_REPEATS = 10_000
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}


@dataclass(frozen=True)
class ReportOptions:
    """`[report]`: title of report.md, whether `kpbench run` writes it, and report.html too."""

    title: str | None = None
    auto: bool = True
    html: bool = True


@dataclass(frozen=True)
class Part:
    """One kind's slice of an experiment: its grid (expanded) and fixed values."""

    index: int  # 1-based position among [[part]] tables (1 for a single-kind config)
    kind: str
    grid: dict[str, list]
    fixed: dict[str, Any]
    points: tuple[dict, ...]  # every parameter of the kind, defaults filled, in grid order


@dataclass(frozen=True)
class Experiment:
    """A validated experiment: what `kpbench run` executes."""

    name: str
    description: str
    seed: int
    repeats: int
    parts: tuple[Part, ...]
    report: ReportOptions
    source: Path
    overrides: tuple[str, ...] = ()
    calibration: dict = field(default_factory=dict)

    @property
    def kinds(self) -> list[str]:
        """Kind names in order of first appearance."""
        return list(dict.fromkeys(p.kind for p in self.parts))

    def resolved(self) -> dict:
        """JSON-ready resolved config (grids expanded, overrides applied, calibration included)."""
        return {
            "name": self.name,
            "description": self.description,
            "seed": self.seed,
            "repeats": self.repeats,
            "report": vars(self.report).copy(),
            "parts": [{"kind": p.kind, "grid": p.grid, "fixed": p.fixed} for p in self.parts],
            "source": str(self.source),
            "overrides": list(self.overrides),
            "calibration": self.calibration,
        }

    def fingerprint(self) -> str:
        """Hash of everything that determines the results (a resumed run must match it)."""
        key = {"seed": self.seed, "repeats": self.repeats, "calibration": self.calibration,
               "parts": [[p.kind, list(p.points)] for p in self.parts]}  # defaults included
        blob = json.dumps(key, sort_keys=True, default=str).encode()
        return hashlib.blake2b(blob, digest_size=8).hexdigest()


class _Errors:
    """Builds one-line errors naming the file (or `--set` for overridden keys) and the key."""

    def __init__(self, source: str, overridden: set[str]):
        self.source = source
        self.overridden = overridden

    def __call__(self, key: str, expected: str, got: str) -> UserError:
        where = self.source
        if any(key == k or key.startswith(k + ".") or k.startswith(key + ".")
               for k in self.overridden):
            where = "--set"
        return UserError(f"{where}: {key}: expected {expected}, got {got}")


def show(value: Any) -> str:
    """A value as a user wrote it: TOML-ish, strings quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return repr(value)


def _typed(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
             dict: "table"}
    return f"{names.get(type(value), type(value).__name__)} {show(value)}"


def parse_override(item: str) -> tuple[str, Any]:
    """'grid.services=[10, 100]' -> ('grid.services', [10, 100]); bare words become strings."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not s for s in key.split(".")):
        raise UserError(f"--set: {item}: expected key=value (e.g. grid.services=[10, 100]), "
                        f"got {item!r}")
    text = text.strip()
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    return key, value


def apply_override(raw: dict, key: str, value: Any) -> None:
    """Set dotted `key` in the raw config; `part.N` addresses the N-th [[part]] (1-based)."""
    node: Any = raw
    parts = key.split(".")
    walked: list[str] = []
    for i, seg in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not seg.isdigit() or not 1 <= int(seg) <= len(node):
                raise UserError(f"--set: {key}: expected a part number 1..{len(node)} after "
                                f"{'.'.join(walked)}, got {seg!r}")
            if last:
                raise UserError(f"--set: {key}: expected a key inside part {seg}, got nothing")
            node = node[int(seg) - 1]
        elif isinstance(node, dict):
            if last:
                node[seg] = value
                return
            if seg not in node:
                node[seg] = {}
            node = node[seg]
        else:
            raise UserError(f"--set: {key}: expected {'.'.join(walked)} to be a table, "
                            f"got {_typed(node)}")
        walked.append(seg)


def load_experiment(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                    workers: int = 1, calibration: dict | None = None) -> Experiment:
    """Read, override and validate a config file; UserError (one line) on any problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"{path}: expected a readable TOML file, got {exc.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: expected valid TOML, got {exc}") from None
    parsed = [parse_override(item) for item in overrides]
    for key, value in parsed:
        apply_override(raw, key, value)
    err = _Errors(str(path), {k for k, _ in parsed})
    return validate(raw, path, err, workers=workers, overrides=tuple(overrides),
                    calibration=calibration or {})


def validate(raw: dict, path: Path, err: _Errors, workers: int = 1,
             overrides: tuple[str, ...] = (), calibration: dict | None = None) -> Experiment:
    """Check a raw config dict against the schema and the kinds' parameters."""
    for key in raw:
        if key not in TOP_KEYS:
            raise err(key, f"one of the keys {', '.join(TOP_KEYS)}", f"unknown key {key!r}")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise err("name", "a name of letters, digits, '_', '-', '.' (used as a folder name)",
                  _typed(name))
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise err("description", "a string", _typed(description))
    seed = _integer(raw.get("seed", 0), "seed", err, 0, 2**63 - 1)
    repeats = _integer(raw.get("repeats", 1), "repeats", err, 1, MAX_REPEATS)
    report = _report_options(raw.get("report", {}), err)

    if "part" in raw:
        clash = [k for k in ("kind", "grid", "fixed") if k in raw]
        if clash:
            raise err(clash[0], "no top-level kind/grid/fixed in a config made of [[part]] "
                      "tables (use part.N.<key>)", f"{clash[0]} beside {len(raw['part'])} parts")
        tables = raw["part"]
        if not isinstance(tables, list) or not tables or not all(isinstance(t, dict)
                                                                 for t in tables):
            raise err("part", "a non-empty array of [[part]] tables", _typed(tables))
        parts = tuple(_part(t, i, f"part.{i}.", err) for i, t in enumerate(tables, 1))
    else:
        parts = (_part({k: raw[k] for k in PART_KEYS if k in raw}, 1, "", err),)

    total = sum(len(p.points) for p in parts) * repeats
    if total > MAX_POINTS:
        raise err("grid", f"at most {MAX_POINTS:,} point runs", f"{total:,}")
    _check_memory(parts, workers, total, err)
    return Experiment(name=name, description=description, seed=seed, repeats=repeats,
                      parts=parts, report=report, source=path, overrides=overrides,
                      calibration=dict(calibration or {}))


def _integer(value: Any, key: str, err: _Errors, lo: int, hi: int) -> int:
    want = f"an integer >= {lo}" if hi >= 2**62 else f"an integer in [{lo}, {hi}]"
    if isinstance(value, bool) or not isinstance(value, int):
        raise err(key, want, _typed(value))
    if not lo <= value <= hi:
        raise err(key, want, show(value))
    return value


def _report_options(table: Any, err: _Errors) -> ReportOptions:
    if not isinstance(table, dict):
        raise err("report", "a table [report]", _typed(table))
    for key, value in table.items():
        want = REPORT_KEYS.get(key)
        if want is None:
            raise err(f"report.{key}", f"one of the keys {', '.join(REPORT_KEYS)}",
                      f"unknown key {key!r}")
        if not isinstance(value, want):
            raise err(f"report.{key}", TYPE_WORDS[want], _typed(value))
    return ReportOptions(**table)


def _kind(table: dict, prefix: str, err: _Errors) -> Kind:
    name = table.get("kind")
    kinds = all_kinds()
    known = ", ".join(kinds) or "(no kinds installed)"
    if name is None:
        raise err(f"{prefix}kind", f"one of {known}", "nothing")
    if not isinstance(name, str):
        raise err(f"{prefix}kind", f"one of {known}", _typed(name))
    if name not in kinds:
        broken = broken_kinds()
        if name in broken:
            raise err(f"{prefix}kind", "a kind whose module imports", broken[name])
        raise err(f"{prefix}kind", f"one of {known}", show(name))
    return kinds[name]


def _part(table: dict, index: int, prefix: str, err: _Errors) -> Part:
    for key in table:
        if key not in PART_KEYS:
            raise err(f"{prefix}{key}", f"one of the keys {', '.join(PART_KEYS)}",
                      f"unknown key {key!r}")
    kind = _kind(table, prefix, err)
    grid_raw = table.get("grid", {})
    fixed_raw = table.get("fixed", {})
    for key, value in (("grid", grid_raw), ("fixed", fixed_raw)):
        if not isinstance(value, dict):
            raise err(f"{prefix}{key}", f"a table [{key}]", _typed(value))
    names = ", ".join(p.name for p in kind.params)
    grid: dict[str, list] = {}
    for key, spec in grid_raw.items():
        param = kind.param(key)
        if param is None:
            raise err(f"{prefix}grid.{key}", f"a parameter of kind {kind.name} ({names})",
                      f"unknown key {key!r}")
        grid[key] = _grid_values(param, spec, f"{prefix}grid.{key}", err)
    fixed: dict[str, Any] = {}
    for key, value in fixed_raw.items():
        param = kind.param(key)
        if param is None:
            raise err(f"{prefix}fixed.{key}", f"a parameter of kind {kind.name} ({names})",
                      f"unknown key {key!r}")
        if key in grid:
            raise err(f"{prefix}fixed.{key}", "a parameter not also swept in [grid]",
                      f"{key!r} in both")
        fixed[key] = _value(param, value, f"{prefix}fixed.{key}", err)
    for param in kind.params:
        if param.default is None and param.name not in grid and param.name not in fixed:
            raise err(f"{prefix}fixed.{param.name}",
                      f"a value (required parameter of kind {kind.name}: {param.help})",
                      "nothing")
    count = math.prod(len(v) for v in grid.values())
    if count > MAX_POINTS:
        raise err(f"{prefix}grid", f"at most {MAX_POINTS:,} points", f"{count:,}")
    base = {p.name: p.default for p in kind.params}
    base.update(fixed)
    points = []
    for combo in itertools.product(*grid.values()):
        point = dict(base)
        point.update(zip(grid, combo, strict=True))
        points.append(point)
    if kind.check is not None:
        for point in points:
            problem = kind.check(dict(point))
            if problem is not None:
                key, expected = problem
                where = "grid" if key in grid else "fixed"
                got = show(point[key]) if key in point else "nothing"
                others = ", ".join(f"{k}={show(point[k])}" for k in grid if k != key)
                raise err(f"{prefix}{where}.{key}", expected,
                          got + (f" (at {others})" if others else ""))
    return Part(index=index, kind=kind.name, grid=grid, fixed=fixed, points=tuple(points))


def _value(param: Param, value: Any, key: str, err: _Errors) -> Any:
    """Check one value against its Param; return it coerced (ints for int params, etc.)."""
    want = param.type
    ok = False
    if want is bool:
        ok = isinstance(value, bool)
    elif want is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif want is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            value = float(value)
            ok = not math.isnan(value)
    elif want is str:
        ok = isinstance(value, str)
    expected = TYPE_WORDS.get(want, want.__name__)
    if param.choices is not None:
        expected = "one of " + ", ".join(show(c) for c in param.choices)
    if not ok:
        raise err(key, expected, _typed(value))
    if param.choices is not None and value not in param.choices:
        raise err(key, expected, show(value))
    lo, hi = param.min, param.max
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if lo is not None and hi is not None:
            bound = f"in [{show(lo)}, {show(hi)}]"
        elif lo is not None:
            bound = f">= {show(lo)}"
        else:
            bound = f"<= {show(hi)}"
        raise err(key, f"{expected} {bound}", show(value))
    return value


def _grid_values(param: Param, spec: Any, key: str, err: _Errors) -> list:
    """Expand one [grid] entry into its list of validated values."""
    if isinstance(spec, dict):
        if len(spec) != 1 or next(iter(spec)) not in ("logspace", "range"):
            raise err(key, "a list, {logspace = [lo, hi, count]} or {range = [lo, hi, step]}",
                      _typed(spec))
        form, args = next(iter(spec.items()))
        values = _expand(param, form, args, f"{key}.{form}", err)
    elif isinstance(spec, list):
        values = spec
    else:
        values = [spec]
    if not values:
        raise err(key, "a non-empty list of values", "[]")
    out = [_value(param, v, key, err) for v in values]
    seen = set()
    for v in out:
        if v in seen:
            raise err(key, "distinct values", f"{show(v)} twice")
        seen.add(v)
    return out


def _expand(param: Param, form: str, args: Any, key: str, err: _Errors) -> list:
    if param.type not in (int, float):
        raise err(key, "a list (logspace and range need a numeric parameter)",
                  f"{form} for {TYPE_WORDS.get(param.type, param.type.__name__)} parameter")
    shape = "[lo, hi, count]" if form == "logspace" else "[lo, hi, step]"
    if (not isinstance(args, list) or len(args) != 3
            or not all(isinstance(a, int | float) and not isinstance(a, bool) for a in args)):
        raise err(key, f"three numbers {shape}", _typed(args))
    lo, hi, third = args
    if lo > hi:
        raise err(key, f"{shape} with lo <= hi", show(args))
    if form == "logspace":
        if lo <= 0:
            raise err(key, f"{shape} with lo > 0", show(args))
        if isinstance(third, float) or not 1 <= third <= MAX_VALUES:
            raise err(key, f"an integer count in [1, {MAX_VALUES:,}]", show(third))
        if third == 1:
            raw = [float(lo)]
        else:
            a, b = math.log10(lo), math.log10(hi)
            raw = [10 ** (a + (b - a) * i / (third - 1)) for i in range(third)]
    else:
        if third <= 0:
            raise err(key, f"{shape} with step > 0", show(args))
        if param.type is int and not all(isinstance(a, int) for a in args):
            raise err(key, f"integer {shape} for integer parameter {param.name}", show(args))
        n = math.floor((hi - lo) / third + 1e-9) + 1
        if n > MAX_VALUES:
            raise err(key, f"at most {MAX_VALUES:,} values", f"{n:,}")
        raw = [lo + third * i for i in range(n)]
    if param.type is int:
        return list(dict.fromkeys(int(round(v)) for v in raw))
    return list(dict.fromkeys(float(f"{v:.12g}") for v in raw))


def _check_memory(parts: tuple[Part, ...], workers: int, tasks: int, err: _Errors) -> None:
    """Reject a grid whose largest point times the concurrent workers exceeds available RAM."""
    kinds = all_kinds()
    worst = (0, None, None)
    for part in parts:
        estimate = kinds[part.kind].memory_bytes
        if estimate is None:
            continue
        for point in part.points:
            need = int(estimate(dict(point)))
            if need > worst[0]:
                worst = (need, part, point)
    need, part, point = worst
    if part is None:
        return
    concurrent = max(1, min(workers, tasks))
    avail = available_memory_bytes()
    if need * concurrent > avail:
        prefix = f"part.{part.index}." if len(parts) > 1 else ""
        at = ", ".join(f"{k}={show(point[k])}" for k in part.grid)
        raise err(f"{prefix}grid",
                  f"a peak memory estimate within the available RAM ({human_bytes(avail)})",
                  f"{human_bytes(need * concurrent)} ({human_bytes(need)} per point at {at} "
                  f"x {concurrent} workers)")


def load_calibration(path: str | Path) -> dict:
    """Read a `--calibration` TOML: a [costmodel] table of numeric cost-model values.

    A [provenance] table (as `kpbench calibrate` writes: kernel, CPU, date, fit uncertainties)
    is allowed and not passed to the models.
    """
    path = Path(path)
    where = f"--calibration {path}"
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"{where}: expected a readable TOML file, got {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{where}: expected valid TOML, got {exc}") from None
    for key in raw:
        if key not in ("costmodel", "provenance"):
            raise UserError(f"{where}: {key}: expected a [costmodel] table (and optionally "
                            f"[provenance]), got unknown key {key!r}")
    table = raw.get("costmodel")
    if not isinstance(table, dict):
        raise UserError(f"{where}: costmodel: expected a [costmodel] table, "
                        f"got {_typed(table) if table is not None else 'nothing'}")
    for key, value in table.items():
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise UserError(f"{where}: costmodel.{key}: expected a number or string, "
                            f"got {_typed(value)}")
    return copy.deepcopy(table)
