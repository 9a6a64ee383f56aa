"""Registry of experiment kinds, discovered from the modules of this package.

Every module `harness/kinds/<name>.py` that exports `KIND` (a `harness.kind.Kind`) is a kind; the
runner never names kinds. Extra kinds living elsewhere (e.g. test kinds) are added with
`register(kind)` in-process, or for every process (including sweep workers) with the environment
variable `KPBENCH_EXTRA_KINDS=module:attr[,module:attr...]`, each attr being a Kind.

A kind module that fails to import does not break the others: `get_kind` of it raises a UserError
naming the import error, and `broken_kinds()` lists them.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from types import ModuleType

from harness.errors import UserError
from harness.kind import Kind

EXTRA_KINDS_ENV = "KPBENCH_EXTRA_KINDS"

_kinds: dict[str, Kind] | None = None
_broken: dict[str, str] = {}


def discover(package: ModuleType) -> tuple[dict[str, Kind], dict[str, str]]:
    """Import every module of `package`; return ({kind name: Kind}, {module: import error})."""
    found: dict[str, Kind] = {}
    broken: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        modname = f"{package.__name__}.{info.name}"
        try:
            module = importlib.import_module(modname)
        except Exception as exc:  # a broken kind must not hide the others
            broken[info.name] = f"{type(exc).__name__}: {exc}"
            continue
        kind = getattr(module, "KIND", None)
        if isinstance(kind, Kind):
            found[kind.name] = kind
        elif kind is not None:
            broken[info.name] = f"KIND is a {type(kind).__name__}, expected harness.kind.Kind"
    return found, broken


def _load_extra(spec: str) -> list[Kind]:
    kinds = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        modname, _, attr = item.partition(":")
        try:
            kind = getattr(importlib.import_module(modname), attr or "KIND")
        except (ImportError, AttributeError) as exc:
            raise UserError(f"{EXTRA_KINDS_ENV}: {item}: expected module:attr naming a Kind, "
                            f"got {type(exc).__name__}: {exc}") from None
        if not isinstance(kind, Kind):
            raise UserError(f"{EXTRA_KINDS_ENV}: {item}: expected a harness.kind.Kind, "
                            f"got {type(kind).__name__}")
        kinds.append(kind)
    return kinds


def _registry() -> dict[str, Kind]:
    global _kinds
    if _kinds is None:
        import harness.kinds as package

        found, broken = discover(package)
        for kind in _load_extra(os.environ.get(EXTRA_KINDS_ENV, "")):
            found[kind.name] = kind
        _broken.update(broken)
        _kinds = found
    return _kinds


def register(kind: Kind) -> None:
    """Add (or replace) a kind in this process's registry."""
    _registry()[kind.name] = kind


def unregister(name: str) -> None:
    """Remove a kind from this process's registry (no error if absent)."""
    _registry().pop(name, None)


def all_kinds() -> dict[str, Kind]:
    """Every working kind, by name (sorted)."""
    return dict(sorted(_registry().items()))


def broken_kinds() -> dict[str, str]:
    """Kind modules that failed to import: {module name: error}."""
    _registry()
    return dict(_broken)


def get_kind(name: str) -> Kind:
    """The kind called `name`; UserError naming the known kinds otherwise."""
    kinds = _registry()
    if name in kinds:
        return kinds[name]
    if name in _broken:
        raise UserError(f"kind: {name}: expected a kind that imports, got {_broken[name]}")
    known = ", ".join(sorted(kinds)) or "none installed"
    raise UserError(f"kind: expected one of {known}, got {name!r}")
