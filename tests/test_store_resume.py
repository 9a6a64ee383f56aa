"""Results store: atomic persistence, SIGKILL + --resume, Ctrl-C, failures, load_run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from harness import cli
from harness.store import load_run

TOTAL = 24
CONFIG = f"""
name = "killme"
kind = "toy"
seed = 11
[grid]
n = {{range = [1, {TOTAL}, 1]}}
[fixed]
sleep_s = 0.12
"""
RESULT_COLUMNS = ["kind", "part", "point", "n", "repeat", "seed", "total", "mean", "count"]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start(cmd, cfg, out, *extra):
    return subprocess.Popen([*cmd, "run", str(cfg), "--out", str(out), "--workers", "2",
                             "--quiet", "--no-report", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _journal_count(out: Path) -> int:
    return sum(1 for _ in out.glob("killme/*/journal/*.json"))


def _wait_for_points(proc, out: Path, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _journal_count(out) < at_least:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "run made no progress"
        time.sleep(0.02)


def _kill_hard(proc) -> None:
    workers = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert not any(_alive(w) for w in workers), "workers outlived the killed sweep"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _table(out: Path) -> tuple[pd.DataFrame, dict]:
    (run,) = list((out / "killme").iterdir())
    return load_run(run)


def test_sigkill_then_resume_equals_uninterrupted(toy_kinds, tmp_path, kpbench_cmd):
    cfg = tmp_path / "killme.toml"
    cfg.write_text(CONFIG)
    killed = tmp_path / "killed"
    proc = _start(kpbench_cmd, cfg, killed)
    _wait_for_points(proc, killed, 5)
    _kill_hard(proc)
    partial, manifest = _table(killed)
    assert 5 <= len(partial) < TOTAL
    assert manifest["status"] == "running"  # killed: it never got to write a final status
    assert not partial.duplicated(["part", "point", "repeat"]).any()
    proc = _start(kpbench_cmd, cfg, killed, "--resume")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "resuming" in err
    resumed, manifest = _table(killed)
    assert manifest["status"] == "complete"
    assert len(manifest["sessions"]) == 2
    assert len(manifest["point_wall_s"]) == TOTAL

    clean = tmp_path / "clean"
    assert cli.main(["run", str(cfg), "--out", str(clean), "--workers", "2", "--quiet",
                     "--no-report"]) == 0
    reference, _ = _table(clean)
    assert len(resumed) == TOTAL
    pd.testing.assert_frame_equal(resumed[RESULT_COLUMNS], reference[RESULT_COLUMNS])
    parquet = pd.read_parquet(next((killed / "killme").iterdir()) / "points.parquet")
    pd.testing.assert_frame_equal(parquet[RESULT_COLUMNS], reference[RESULT_COLUMNS])


def test_ctrl_c_marks_interrupted_and_prints_resume(toy_kinds, tmp_path, kpbench_cmd):
    cfg = tmp_path / "killme.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "r"
    proc = _start(kpbench_cmd, cfg, out, "--set", "seed=11")
    _wait_for_points(proc, out, 2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "resume with: kpbench run" in err and "--set=seed=11" in err and "--resume" in err
    table, manifest = _table(out)
    assert manifest["status"] == "interrupted"
    assert 2 <= len(table) < TOTAL
    assert "Traceback" not in err


def test_failed_point_marks_run_failed_and_keeps_others(toy_kinds, tmp_path, capsys):
    cfg = tmp_path / "f.toml"
    cfg.write_text("name='f'\nkind='toy'\n[grid]\nn=[1,2,3]\nfail=[false,true]\n")
    out = tmp_path / "r"
    code = cli.main(["run", str(cfg), "--out", str(out), "--workers", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "toy failure requested" in err and "Traceback" not in err
    (run,) = list((out / "f").iterdir())
    table, manifest = load_run(run)
    assert manifest["status"] == "failed"
    assert len(table) == 3 and not table["fail"].any()
    assert len(manifest["errors"]) == 3
    assert "RuntimeError: toy failure requested" in manifest["errors"][0]["error"]
    assert "Traceback" in manifest["errors"][0]["traceback"]


def test_lost_worker_marks_run_failed_and_keeps_finished(toy_kinds, tmp_path, capsys):
    cfg = tmp_path / "w.toml"
    cfg.write_text("name='w'\nkind='toy'\n[grid]\nn=[1,2,3,4]\n[fixed]\ncrash=true\n")
    out = tmp_path / "r"
    code = cli.main(["run", str(cfg), "--out", str(out), "--workers", "2", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "a worker process died" in err and "Traceback" not in err
    (run,) = list((out / "w").iterdir())
    _, manifest = load_run(run)
    assert manifest["status"] == "failed"
    assert "WorkerLost" in manifest["errors"][0]["error"]


def test_resume_of_complete_run_does_nothing(toy_kinds, tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("name='c'\nkind='toy'\n[grid]\nn=[1,2]\n")
    out = tmp_path / "r"
    assert cli.main(["run", str(cfg), "--out", str(out), "--quiet", "--no-report"]) == 0
    assert cli.main(["run", str(cfg), "--out", str(out), "--quiet", "--resume"]) == 0
    assert "nothing to resume" in capsys.readouterr().err
    assert len(list((out / "c").iterdir())) == 1
    # a different config does not resume that run: it starts a new one
    assert cli.main(["run", str(cfg), "--out", str(out), "--quiet", "--resume", "--no-report",
                     "--set", "seed=2"]) == 0
    assert len(list((out / "c").iterdir())) == 2


def test_manifest_records_calibration(toy_kinds, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("name='cal'\nkind='toy'\n[grid]\nn=[1,2]\n")
    cal = tmp_path / "cal.toml"
    cal.write_text("[costmodel]\nscale = 3.5\n")
    out = tmp_path / "r"
    assert cli.main(["run", str(cfg), "--out", str(out), "--quiet", "--no-report",
                     "--calibration", str(cal)]) == 0
    (run,) = list((out / "cal").iterdir())
    table, manifest = load_run(run)
    assert manifest["calibration"] == {"scale": 3.5}
    assert json.loads((run / "resolved.json").read_text())["calibration"] == {"scale": 3.5}
    assert (table["scale"] == 3.5).all()


@pytest.mark.slow
def test_sigkill_at_many_moments(toy_kinds, tmp_path, kpbench_cmd):
    """Kill repeatedly right after 1, 2, 4, ... points: nothing lost, nothing duplicated."""
    cfg = tmp_path / "killme.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "k"
    marks = [1, 2, 4, 7, 12, 18]
    for i, at_least in enumerate(marks):
        proc = _start(kpbench_cmd, cfg, out, *(["--resume"] if i else []))
        _wait_for_points(proc, out, at_least)
        _kill_hard(proc)
    proc = _start(kpbench_cmd, cfg, out, "--resume")
    assert proc.wait(timeout=120) == 0
    table, manifest = _table(out)
    assert manifest["status"] == "complete"
    assert sorted(table["n"]) == list(range(1, TOTAL + 1))


def test_reopen_drops_half_written_and_unreadable_files(toy_kinds, tmp_path, capsys):
    from harness.config import load_experiment
    from harness.store import RunStore
    from harness.sweep import run_task, tasks_for

    cfg = tmp_path / "j.toml"
    cfg.write_text("name='j'\nkind='toy'\n[grid]\nn=[1,2,3]\n")
    exp = load_experiment(cfg)
    store = RunStore.create(tmp_path / "r", exp, {})
    tasks = tasks_for(exp)
    store.add(run_task(tasks[0], {}))
    store._lock.close()  # simulate the process dying without finish()
    (store.journal / f".{tasks[1].key}.json.tmp123").write_text('{"key": "half')
    (store.journal / f"{tasks[2].key}.json").write_text('{"key": "trunc')
    (store.path / ".points.parquet.tmp99").write_text("junk")
    again = RunStore.reopen(store.path, {})
    assert again.done_keys() == {tasks[0].key}
    assert "unreadable; its point will run again" in capsys.readouterr().err
    assert not list(store.journal.glob(".*")) and not list(store.path.glob(".*.tmp*"))
    again.finish("interrupted")
    table, manifest = load_run(store.path)
    assert len(table) == 1 and manifest["status"] == "interrupted"
