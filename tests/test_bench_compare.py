"""The speed gate's logic on synthetic runs (no real benchmarks are timed here)."""

from __future__ import annotations

import json

import pytest

from harness import bench
from harness.errors import UserError

BASE_TIMES = {
    "bench_iptables.py::test_traverse[100000]": 0.020,
    "bench_schedulers.py::test_rr[10]": 0.0005,
    "bench_connsim.py::test_connsim": 0.150,
}


def pytest_json(times: dict[str, float], reference_s: float, quick: bool = False,
                slow: tuple[str, ...] = ()) -> dict:
    """A pytest-benchmark document as benchmarks/conftest.py writes it."""
    return {
        "machine_info": {"node": "test", "cpu": {"brand_raw": "synthetic"}},
        "commit_info": {"id": "abc"},
        "benchmarks": [
            {"name": name.split("::")[-1], "fullname": f"benchmarks/{name}",
             "stats": {"min": t, "median": t * 1.05, "mean": t * 1.1, "rounds": 5},
             "extra_info": {"kp_quick": name not in slow}}
            for name, t in times.items()
        ],
        "kpbench": {"reference_s": reference_s, "quick": quick},
    }


def suite(times: dict[str, float], reference_s: float = 0.005, **kw) -> bench.Suite:
    return bench.suite_from_pytest_json(pytest_json(times, reference_s, **kw))


def test_figures_are_times_over_the_reference() -> None:
    s = suite(BASE_TIMES, reference_s=0.004)
    fig = s.figures["bench_iptables.py::test_traverse[100000]"]
    assert fig.figure == pytest.approx(0.020 / 0.004)
    assert fig.seconds == pytest.approx(0.020)
    assert "kp_quick" not in fig.extra_info


def test_twofold_slowdown_fails() -> None:
    slow = {**BASE_TIMES, "bench_schedulers.py::test_rr[10]": 0.0010}
    comp = bench.compare(suite(BASE_TIMES), suite(slow), threshold=0.25)
    assert not comp.ok
    assert [r.name for r in comp.regressed] == ["bench_schedulers.py::test_rr[10]"]
    assert comp.regressed[0].ratio == pytest.approx(2.0)
    assert "REGRESSED" in bench.format_comparison(comp)


def test_ten_percent_noise_passes() -> None:
    noisy = {name: t * factor for (name, t), factor in zip(BASE_TIMES.items(), (1.10, 0.91, 1.08),
                                                            strict=True)}
    comp = bench.compare(suite(BASE_TIMES), suite(noisy), threshold=0.25)
    assert comp.ok
    assert {r.verdict for r in comp.rows} == {"ok"}


def test_threshold_is_a_boundary_that_can_fail() -> None:
    just_over = {name: t * 1.26 for name, t in BASE_TIMES.items()}
    just_under = {name: t * 1.24 for name, t in BASE_TIMES.items()}
    assert not bench.compare(suite(BASE_TIMES), suite(just_over), 0.25).ok
    assert bench.compare(suite(BASE_TIMES), suite(just_under), 0.25).ok


def test_session_reference_is_used_and_local_one_kept() -> None:
    doc = pytest_json(BASE_TIMES, 0.005)
    doc["benchmarks"][0]["extra_info"]["kp_reference_s"] = 0.010
    s = bench.suite_from_pytest_json(doc)
    fig = s.figures["bench_iptables.py::test_traverse[100000]"]
    assert fig.figure == pytest.approx(0.020 / 0.005)
    assert fig.extra_info["kp_reference_s"] == 0.010


def test_uniformly_slower_machine_is_not_a_regression() -> None:
    """Every benchmark and the reference loop 2.5x slower: figures unchanged, gate passes."""
    slower = {name: t * 2.5 for name, t in BASE_TIMES.items()}
    comp = bench.compare(suite(BASE_TIMES, 0.005), suite(slower, 0.005 * 2.5), threshold=0.25)
    assert comp.ok
    assert all(r.ratio == pytest.approx(1.0) for r in comp.rows)
    # ... whereas without the reference scaling the same times would fail.
    assert not bench.compare(suite(BASE_TIMES, 0.005), suite(slower, 0.005), 0.25).ok


def test_faster_is_reported_not_failed() -> None:
    fast = {**BASE_TIMES, "bench_connsim.py::test_connsim": 0.050}
    comp = bench.compare(suite(BASE_TIMES), suite(fast), 0.25)
    assert comp.ok
    assert [r.name for r in comp.by_verdict("faster")] == ["bench_connsim.py::test_connsim"]


def test_new_and_missing_benchmarks_are_reported() -> None:
    current = dict(BASE_TIMES)
    del current["bench_connsim.py::test_connsim"]
    current["bench_ipvs.py::test_lookup"] = 0.001
    comp = bench.compare(suite(BASE_TIMES), suite(current), 0.25)
    assert comp.ok  # neither is a failure
    assert [r.name for r in comp.by_verdict("missing")] == ["bench_connsim.py::test_connsim"]
    assert [r.name for r in comp.by_verdict("new")] == ["bench_ipvs.py::test_lookup"]
    table = bench.format_comparison(comp)
    assert "bench_connsim.py::test_connsim" in table and "missing" in table
    assert "bench_ipvs.py::test_lookup" in table and "new" in table


def test_quick_run_does_not_report_slow_benchmarks_missing() -> None:
    slow_name = "bench_connsim.py::test_connsim"
    base = suite(BASE_TIMES, slow=(slow_name,))
    quick_times = {k: v for k, v in BASE_TIMES.items() if k != slow_name}
    comp = bench.compare(base, suite(quick_times, quick=True), 0.25)
    assert comp.by_verdict("missing") == []
    dropped = {k: v for k, v in quick_times.items() if "rr" not in k}
    comp = bench.compare(base, suite(dropped, quick=True), 0.25)
    assert [r.name for r in comp.by_verdict("missing")] == ["bench_schedulers.py::test_rr[10]"]


def test_baseline_round_trip_and_cli_main(tmp_path, monkeypatch, capsys) -> None:
    """Saved baseline reads back; the command exits 1 naming the regressed benchmark."""
    path = bench.save_baseline(suite(BASE_TIMES), tmp_path / "bench.json")
    again = bench.load_baseline(path)
    assert {n: f.figure for n, f in again.figures.items()} == pytest.approx(
        {n: f.figure for n, f in suite(BASE_TIMES).figures.items()})
    # A raw pytest-benchmark JSON of a kpbench run is accepted as a baseline too.
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps(pytest_json(BASE_TIMES, 0.005)))
    assert set(bench.load_baseline(raw).figures) == set(BASE_TIMES)

    from harness.commands import bench as command

    slow = {**BASE_TIMES, "bench_iptables.py::test_traverse[100000]": 0.060}
    monkeypatch.setattr(bench, "run_suite", lambda **kw: suite(slow))
    parser = __import__("argparse").ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--no-golden", "--compare", str(path), "--threshold", "60%"])
    assert command.main(args) == 1
    out = capsys.readouterr().out
    assert "REGRESSED: bench_iptables.py::test_traverse[100000]: 3.00x" in out
    monkeypatch.setattr(bench, "run_suite", lambda **kw: suite(BASE_TIMES))
    assert command.main(args) == 0
    # A benchmark that raised fails the gate even when every figure that ran is fine.
    ok = suite(BASE_TIMES)
    failing = bench.Suite(ok.figures, ok.reference_s, meta={"pytest_exit": 1})
    monkeypatch.setattr(bench, "run_suite", lambda **kw: failing)
    assert command.main(args) == 1
    assert "a benchmark raised or failed" in capsys.readouterr().out


def test_merge_keeps_entries_a_partial_run_did_not_touch() -> None:
    base = suite(BASE_TIMES)
    part = suite({"bench_schedulers.py::test_rr[10]": 0.0007}, quick=True)
    merged = bench.merge_into_baseline(base, part)
    assert set(merged.figures) == set(BASE_TIMES)
    assert merged.figures["bench_schedulers.py::test_rr[10]"].figure == pytest.approx(0.14)


@pytest.mark.parametrize("text,value", [("25%", 0.25), ("60", 0.60), (" 7.5% ", 0.075)])
def test_parse_threshold(text: str, value: float) -> None:
    assert bench.parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["abc", "-5%", "0", "nan%"])
def test_bad_threshold_is_a_user_error(text: str) -> None:
    with pytest.raises(UserError, match="--threshold"):
        bench.parse_threshold(text)


def test_json_without_reference_is_a_user_error() -> None:
    doc = pytest_json(BASE_TIMES, 0.005)
    del doc["kpbench"]
    with pytest.raises(UserError, match="reference_s"):
        bench.suite_from_pytest_json(doc)


def test_bad_baseline_is_a_user_error(tmp_path) -> None:
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps({"schema": 1, "benchmarks": {"x": {"figure": -1}}}))
    with pytest.raises(UserError, match="benchmarks.x.figure"):
        bench.load_baseline(bad)
    with pytest.raises(UserError, match="expected an existing file"):
        bench.load_baseline(tmp_path / "none.json")


def test_targets_are_read_from_extra_info() -> None:
    doc = pytest_json(BASE_TIMES, 0.005)
    infos = [{"speedup_vs_numpy": 4.2}, {"decisions_per_s": 1.5e7, "o1": True},
             {"speedup_vs_simpy": 60.0}]
    for entry, info in zip(doc["benchmarks"], infos, strict=True):
        entry["extra_info"].update(info)
    rows = bench.target_rows(bench.suite_from_pytest_json(doc))
    assert [(r[1], r[4]) for r in rows] == [
        ("speedup_vs_simpy", True), ("speedup_vs_numpy", True), ("decisions_per_s", False)]
    assert "MISSED" in bench.format_targets(bench.suite_from_pytest_json(doc))


@pytest.mark.slow
def test_real_suite_json_carries_the_reference_and_quick_flags() -> None:
    """End to end through pytest-benchmark: only the reference-loop benchmark, one quick round."""
    suite = bench.run_suite(quick=True, select="test_reference_loop",
                            extra=("--benchmark-min-rounds=1", "--benchmark-max-time=0"))
    assert suite.quick and suite.reference_s > 0
    fig = suite.figures["bench_reference.py::test_reference_loop"]
    assert fig.quick and fig.extra_info["hash_rounds_per_s"] > 0
    # the figure is the benchmark's own time over the session reference (no timing bound here)
    assert fig.figure == pytest.approx(fig.seconds / suite.reference_s)


def test_best_of_keeps_the_smaller_figure_of_the_rerun_benchmarks() -> None:
    first = suite({**BASE_TIMES, "bench_schedulers.py::test_rr[10]": 0.0010})
    rerun = suite({"bench_schedulers.py::test_rr[10]": 0.0006,
                   "bench_connsim.py::test_connsim": 0.300})
    best = bench.best_of(first, rerun)
    assert best.figures["bench_schedulers.py::test_rr[10]"].figure == pytest.approx(0.12)
    assert best.figures["bench_connsim.py::test_connsim"].figure == pytest.approx(30.0)
    assert set(best.figures) == set(BASE_TIMES)
    failed = bench.Suite(rerun.figures, rerun.reference_s, meta={"pytest_exit": 1})
    assert bench.best_of(first, failed).meta["pytest_exit"] == 1


def _gate(tmp_path, monkeypatch, runs: list[dict[str, float]], *argv: str):
    """Run `kpbench bench --no-golden` against BASE_TIMES with the given successive runs;
    returns (exit code, the `nodes` each run was asked for)."""
    from harness.commands import bench as command

    path = bench.save_baseline(suite(BASE_TIMES), tmp_path / "bench.json")
    calls = []

    def fake_run(**kw):
        calls.append(kw.get("nodes", ()))
        return suite(runs[len(calls) - 1])

    monkeypatch.setattr(bench, "run_suite", fake_run)
    parser = __import__("argparse").ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--no-golden", "--compare", str(path), *argv])
    return command.main(args), calls


def test_a_regression_that_does_not_reproduce_in_a_fresh_process_passes(
        tmp_path, monkeypatch, capsys) -> None:
    slow = {**BASE_TIMES, "bench_schedulers.py::test_rr[10]": 0.0010}
    code, calls = _gate(tmp_path, monkeypatch, [slow, {"bench_schedulers.py::test_rr[10]": 0.0005}])
    assert code == 0
    assert calls == [(), ("bench_schedulers.py::test_rr[10]",)]
    assert "re-timing them in a fresh process to confirm (1/2)" in capsys.readouterr().out


def test_a_regression_that_reproduces_fails_after_the_confirmations(
        tmp_path, monkeypatch, capsys) -> None:
    slow = {**BASE_TIMES, "bench_schedulers.py::test_rr[10]": 0.0010}
    again = {"bench_schedulers.py::test_rr[10]": 0.0009}
    code, calls = _gate(tmp_path, monkeypatch, [slow, again, again])
    assert code == 1 and len(calls) == 3
    assert "REGRESSED: bench_schedulers.py::test_rr[10]: 1.80x" in capsys.readouterr().out
    code, calls = _gate(tmp_path, monkeypatch, [slow], "--confirm", "0")
    assert code == 1 and calls == [()]


def test_pytest_command_selects_benchmark_nodes() -> None:
    cmd = bench.pytest_command(bench.REPO_ROOT / "x.json",
                               nodes=("bench_schedulers.py::test_decisions[rr-10]",))
    assert str(bench.BENCH_DIR / "bench_schedulers.py::test_decisions[rr-10]") in cmd
    assert str(bench.BENCH_DIR) not in cmd
