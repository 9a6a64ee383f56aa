"""Config validation: malformed configs give one-line errors naming file, key and expectation."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness import cli
from harness.config import apply_override, load_calibration, load_experiment, parse_override
from harness.errors import UserError

GOOD = """
name = "t"
kind = "toy"
seed = 1
repeats = 2
[grid]
n = [10, 100]
mode = ["fast", "slow"]
[fixed]
rate = 2.0
"""

# (config text, --set overrides, expected substring of the one-line error)
MALFORMED = [
    ("kind = 'toy'\nbogus = 1", [], "bogus: expected one of the keys"),
    ("kind = 'nope'", [], "kind: expected one of"),
    ("seed = 1", [], "kind: expected one of"),
    ("kind = 3", [], "kind: expected one of"),
    ("kind = 'toy'\nseed = 'x'", [], "seed: expected an integer"),
    ("kind = 'toy'\nseed = -1", [], "seed: expected an integer >= 0, got -1"),
    ("kind = 'toy'\nrepeats = 0", [], "repeats: expected an integer in [1,"),
    ("kind = 'toy'\nrepeats = 1.5", [], "repeats: expected an integer"),
    ("kind = 'toy'\nname = 'a b/c'", [], "name: expected a name of letters"),
    ("kind = 'toy'\n[grid]\nn = []", [], "grid.n: expected a non-empty list"),
    ("kind = 'toy'\n[grid]\nservices = [1]", [], "grid.services: expected a parameter of kind toy"),
    ("kind = 'toy'\n[grid]\nn = [0, 10]", [], "grid.n: expected an integer >= 1, got 0"),
    ("kind = 'toy'\n[grid]\nn = ['ten']", [], "grid.n: expected an integer, got string 'ten'"),
    ("kind = 'toy'\n[grid]\nrate = [-1.0]", [], "grid.rate: expected a number >= 0.0, got -1.0"),
    ("kind = 'toy'\n[grid]\nscheduler = ['rr', 'bogus']", [],
     "grid.scheduler: expected one of 'rr', 'wrr', 'mh', got 'bogus'"),
    ("kind = 'toy'\n[grid]\nn = [1, 1]", [], "grid.n: expected distinct values"),
    ("kind = 'toy'\n[grid]\nn = {logspace = [0, 10, 3]}", [], "grid.n.logspace: expected"),
    ("kind = 'toy'\n[grid]\nn = {logspace = [10, 1, 3]}", [], "with lo <= hi"),
    ("kind = 'toy'\n[grid]\nn = {logspace = [1, 10]}", [], "expected three numbers"),
    ("kind = 'toy'\n[grid]\nn = {range = [1, 10, 0]}", [], "with step > 0"),
    ("kind = 'toy'\n[grid]\nn = {range = [1, 10, 0.5]}", [], "integer [lo, hi, step]"),
    ("kind = 'toy'\n[grid]\nn = {linspace = [1, 10, 2]}", [], "expected a list, {logspace"),
    ("kind = 'toy'\n[grid]\nmode = {logspace = [1, 10, 2]}", [], "need a numeric parameter"),
    ("kind = 'toy'\n[grid]\nfail = [1]", [], "grid.fail: expected a boolean, got integer 1"),
    ("kind = 'toy'\ngrid = 5", [], "grid: expected a table [grid]"),
    ("kind = 'toy'\n[grid]\nn = [1]\n[fixed]\nn = 2", [], "fixed.n: expected a parameter not"),
    ("kind = 'toy'\n[fixed]\nmode = 'medium'", [], "fixed.mode: expected one of 'fast', 'slow'"),
    ("kind = 'toy'\n[fixed]\nmode = 'slow'\nn = 200000", [],
     "fixed.n: expected at most 100000 when mode = 'slow', got 200000"),
    ("kind = 'toy'\n[grid]\nn = [10, 200000]\nmode = ['slow']", [],
     "grid.n: expected at most 100000 when mode = 'slow', got 200000"),
    ("kind = 'toy2'", [], "fixed.k: expected a value (required parameter"),
    ("kind = 'toy2'\n[fixed]\nk = 1001", [], "fixed.k: expected an integer in [1, 1000]"),
    ("kind = 'toy'\n[grid]\nn = [1000000000000000]", [], "grid: expected a peak memory estimate"),
    ("kind = 'toy'\n[report]\ncolour = 'red'", [], "report.colour: expected one of the keys"),
    ("kind = 'toy'\n[report]\nauto = 'yes'", [], "report.auto: expected a boolean"),
    ("kind = 'toy'\n[[part]]\nkind = 'toy'", [], "kind: expected no top-level kind/grid/fixed"),
    ("[[part]]\nkind = 'toy'", ["grid.n=[1]"], "--set: grid: expected no top-level"),
    ("part = 3", [], "part: expected a non-empty array"),
    ("[[part]]\nkind = 'toy'\n[[part]]\nkind = 'toy2'\nfixed = {k = 0}", [],
     "part.2.fixed.k: expected an integer in [1, 1000], got 0"),
    ("[[part]]\nkind = 'toy'\nextra = 1", [], "part.1.extra: expected one of the keys"),
    ("[[part]]\nkind = 'toy'\ngrid = {n = [0]}", [], "part.1.grid.n: expected an integer >= 1"),
    ("kind = 'toy'\n[grid]\nn = {logspace = [10, 100000000, 20000000]}", [],
     "expected an integer count in [1, 1,000,000]"),
    ("this is = not toml [", [], "expected valid TOML"),
    # --set overrides
    (GOOD, ["grid.n=[0]"], "--set: grid.n: expected an integer >= 1, got 0"),
    (GOOD, ["seed=abc"], "--set: seed: expected an integer"),
    (GOOD, ["nonsense"], "--set: nonsense: expected key=value"),
    (GOOD, ["grid.scheduler=[\"nope\"]"], "--set: grid.scheduler: expected one of"),
    (GOOD, ["kind.x=1"], "--set: kind.x: expected kind to be a table"),
    ("[[part]]\nkind = 'toy'", ["part.3.grid.n=[1]"],
     "--set: part.3.grid.n: expected a part number 1..1"),
    (GOOD, ["fixed.rate=-0.5"], "--set: fixed.rate: expected a number >= 0.0, got -0.5"),
]


def _write(tmp_path, text: str):
    path = tmp_path / "cfg.toml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(("text", "overrides", "expected"), MALFORMED,
                         ids=[f"bad{i:02d}" for i in range(len(MALFORMED))])
def test_malformed_config_is_one_line_error(toy_kinds, tmp_path, text, overrides, expected):
    path = _write(tmp_path, text)
    with pytest.raises(UserError) as info:
        load_experiment(path, overrides)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert message.startswith(("--set", str(path)))


def test_at_least_25_malformed_cases():
    assert len(MALFORMED) >= 25


def test_cli_bad_config_exit_2_one_line_nothing_written(toy_kinds, tmp_path, capsys):
    path = _write(tmp_path, "kind = 'toy'\n[grid]\nn = [0]")
    out = tmp_path / "results"
    code = cli.main(["run", str(path), "--out", str(out), "--workers", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.splitlines() == [f"kpbench: error: {path}: grid.n: expected an integer >= 1, got 0"]
    assert not out.exists()


def test_cli_bad_calibration_exit_2(toy_kinds, tmp_path, capsys):
    path = _write(tmp_path, GOOD)
    cal = tmp_path / "cal.toml"
    cal.write_text("[costmodel]\nrule_ns = [1]\n")
    code = cli.main(["run", str(path), "--calibration", str(cal), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "costmodel.rule_ns: expected a number" in err and len(err.splitlines()) == 1
    cal.write_text("[other]\nx = 1\n")
    with pytest.raises(UserError, match="other: expected a \\[costmodel\\] table"):
        load_calibration(cal)
    cal.write_text("[costmodel]\nrule_ns = 3.5\nlabel = 'here'\n[provenance]\nkernel = '6.18'\n")
    assert load_calibration(cal) == {"rule_ns": 3.5, "label": "here"}
    example = Path(__file__).parents[1] / "results/baseline/calibration-example.toml"
    assert load_calibration(example)["rule_ns"] > 0


def test_good_config_points_and_defaults(toy_kinds, tmp_path):
    exp = load_experiment(_write(tmp_path, GOOD))
    assert exp.name == "t" and exp.seed == 1 and exp.repeats == 2
    (part,) = exp.parts
    assert part.grid == {"n": [10, 100], "mode": ["fast", "slow"]}
    assert [(p["n"], p["mode"]) for p in part.points] == [
        (10, "fast"), (10, "slow"), (100, "fast"), (100, "slow")]
    assert all(p["rate"] == 2.0 and p["scheduler"] == "rr" and p["fail"] is False
               for p in part.points)


def test_overrides_change_any_key(toy_kinds, tmp_path):
    exp = load_experiment(_write(tmp_path, GOOD), [
        "seed=9", "grid.n={logspace=[1, 1000, 4]}", "fixed.label=hello", "name=other",
        "report.title='T'"])
    assert exp.seed == 9 and exp.name == "other" and exp.report.title == "T"
    assert exp.parts[0].grid["n"] == [1, 10, 100, 1000]
    assert exp.parts[0].points[0]["label"] == "hello"


def test_parts_config_and_part_override(toy_kinds, tmp_path):
    text = """
    name = "multi"
    [[part]]
    kind = "toy"
    grid = {n = [1, 2]}
    [[part]]
    kind = "toy2"
    fixed = {k = 3}
    """
    exp = load_experiment(_write(tmp_path, text), ["part.2.grid.mode=['a','b']"])
    assert [p.kind for p in exp.parts] == ["toy", "toy2"]
    assert exp.kinds == ["toy", "toy2"]
    assert [pt["mode"] for pt in exp.parts[1].points] == ["a", "b"]
    assert exp.parts[1].index == 2


def test_float_params_accept_integers_and_int_params_integral_floats(toy_kinds, tmp_path):
    exp = load_experiment(_write(tmp_path, "kind='toy'\n[fixed]\nrate = 2\nn = 1e3"))
    point = exp.parts[0].points[0]
    assert point["rate"] == 2.0 and isinstance(point["rate"], float)
    assert point["n"] == 1000 and isinstance(point["n"], int)


def test_fingerprint_tracks_results_relevant_keys(toy_kinds, tmp_path):
    path = _write(tmp_path, GOOD)
    a = load_experiment(path)
    assert a.fingerprint() == load_experiment(path, ["report.title='x'"]).fingerprint()
    assert a.fingerprint() != load_experiment(path, ["seed=2"]).fingerprint()
    assert a.fingerprint() != load_experiment(path, calibration={"x": 1}).fingerprint()


def test_parse_override_values():
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("x=ipvs") == ("x", "ipvs")
    assert parse_override("x='ipvs'") == ("x", "ipvs")
    assert parse_override("x=true") == ("x", True)
    assert parse_override("x={logspace=[1,10,2]}") == ("x", {"logspace": [1, 10, 2]})
    raw: dict = {}
    apply_override(raw, "grid.n", [1])
    assert raw == {"grid": {"n": [1]}}


def test_real_kind_discovery_and_registry(tmp_path, monkeypatch):
    import harness.kinds as registry
    from harness.kind import Kind

    for name, kind in registry.all_kinds().items():
        assert isinstance(kind, Kind) and kind.name == name
        assert kind.summary and "\n" not in kind.summary
        assert len({p.name for p in kind.params}) == len(kind.params)
    pkg = tmp_path / "fakekinds"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "alpha.py").write_text(
        "from harness.kind import Kind\n"
        "KIND = Kind('alpha', 's', (), lambda p, s, c: {}, lambda: None, lambda d, p: None)\n")
    (pkg / "broken.py").write_text("raise ImportError('missing dependency')\n")
    (pkg / "helper.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import fakekinds

    found, broken = registry.discover(fakekinds)
    assert list(found) == ["alpha"]
    assert "missing dependency" in broken["broken"]


def test_get_kind_unknown_is_user_error():
    from harness.kinds import get_kind

    with pytest.raises(UserError, match="kind: expected one of"):
        get_kind("no-such-kind")


def test_real_kinds_parameters_are_self_consistent():
    """Every discovered kind: typed params, defaults within their own bounds/choices, and a
    default point that passes its check and has a memory estimate."""
    from harness.config import _Errors, _value
    from harness.kinds import all_kinds

    err = _Errors("kind", set())
    for kind in all_kinds().values():
        point = {}
        for p in kind.params:
            assert p.type in (int, float, str, bool), (kind.name, p.name)
            assert p.help, (kind.name, p.name)
            if p.default is not None:
                point[p.name] = _value(p, p.default, f"{kind.name}.{p.name}", err)
        if len(point) == len(kind.params):
            if kind.check is not None:
                assert kind.check(dict(point)) is None, kind.name
            if kind.memory_bytes is not None:
                assert int(kind.memory_bytes(dict(point))) >= 0, kind.name
