"""Dask executors: same results as the local executor, resume, a killed worker, missing Dask.

One LocalCluster of 2 single-threaded worker processes is shared by the module (`--executor dask
--scheduler ADDR`); `--executor dask-local` starts its own.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from harness import cli
from harness.store import load_run

distributed = pytest.importorskip("distributed")

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
TOY = """
name = "{name}"
kind = "toy"
seed = 21
repeats = 2
[grid]
n = [1, 10, 100, 1000]
mode = ["fast", "slow"]
[fixed]
sleep_s = {sleep}
rate = 2.5
"""


def _config(tmp_path: Path, name: str, sleep: float = 0.0) -> Path:
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(TOY.format(name=name, sleep=sleep))
    return cfg


def _run(cfg: Path, out: Path, *extra: str) -> int:
    return cli.main(["run", str(cfg), "--out", str(out), "--quiet", "--no-report", *extra])


def _table(out: Path, name: str) -> pd.DataFrame:
    (run,) = sorted((out / name).iterdir())
    df, manifest = load_run(run)
    assert manifest["status"] == "complete"
    return df.drop(columns=["wall_s"])


@pytest.fixture(scope="module")
def toy_env():
    """Toy kinds visible to this process and to every Dask worker process started later."""
    from toykind import KIND, KIND2

    from harness import kinds

    saved = {k: os.environ.get(k) for k in ("KPBENCH_EXTRA_KINDS", "PYTHONPATH")}
    os.environ["KPBENCH_EXTRA_KINDS"] = "toykind:KIND,toykind:KIND2"
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS), str(REPO), *filter(None, [saved["PYTHONPATH"]])])
    kinds.register(KIND)
    kinds.register(KIND2)
    yield
    kinds.unregister(KIND.name)
    kinds.unregister(KIND2.name)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def cluster(toy_env):
    """A LocalCluster of 2 single-threaded worker processes and a client to inspect it."""
    import logging

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", memory_limit=0,
                                  silence_logs=logging.ERROR) as lc:
        with distributed.Client(lc, set_as_default=False) as client:
            yield lc.scheduler_address, client


@pytest.fixture(scope="module")
def references(toy_env, tmp_path_factory):
    """sleep_s -> the toy sweep run by the local executor (sleep_s is a parameter: it seeds)."""
    tables: dict[float, pd.DataFrame] = {}

    def get(sleep: float) -> pd.DataFrame:
        if sleep not in tables:
            tmp = tmp_path_factory.mktemp("ref")
            assert _run(_config(tmp, "toyref", sleep), tmp / "out", "--workers", "2") == 0
            tables[sleep] = _table(tmp / "out", "toyref")
        return tables[sleep]

    return get


@pytest.fixture(scope="module")
def reference(references):
    return references(0.0)


def _same(df: pd.DataFrame, reference: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(df.reset_index(drop=True), reference.reset_index(drop=True),
                                  check_exact=True)


def test_dask_matches_local_executor(cluster, reference, tmp_path):
    address, client = cluster
    cfg = _config(tmp_path, "toyref")
    assert _run(cfg, tmp_path / "out", "--executor", "dask", "--scheduler", address) == 0
    _same(_table(tmp_path / "out", "toyref"), reference)
    (run,) = (tmp_path / "out" / "toyref").iterdir()
    _, manifest = load_run(run)
    assert manifest["sessions"][-1]["executor"] == "dask"
    assert manifest["sessions"][-1]["workers"] == 2


def test_dask_local_matches_local_executor(toy_env, reference, tmp_path):
    cfg = _config(tmp_path, "toyref")
    assert _run(cfg, tmp_path / "out", "--executor", "dask-local", "--workers", "2") == 0
    _same(_table(tmp_path / "out", "toyref"), reference)


def _journal(out: Path) -> int:
    return sum(1 for _ in out.glob("*/*/journal/*.json"))


def test_interrupted_dask_run_resumes(cluster, references, tmp_path):
    """SIGTERM mid-run keeps the finished points; --resume on Dask finishes the same table."""
    address, _ = cluster
    cfg = _config(tmp_path, "toyref", sleep=0.25)
    reference = references(0.25)
    out = tmp_path / "out"
    from harness import sweep

    def interrupt() -> None:
        deadline = time.monotonic() + 60
        while _journal(out) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        if signal.getsignal(signal.SIGTERM) is sweep._raise_interrupt:  # the sweep is running
            os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=interrupt)
    killer.start()
    try:
        code = _run(cfg, out, "--executor", "dask", "--scheduler", address)
    finally:
        killer.join()
    assert code == 130
    (run,) = (out / "toyref").iterdir()
    partial, manifest = load_run(run)
    assert manifest["status"] == "interrupted"
    assert 3 <= len(partial) < len(reference)
    assert _run(cfg, out, "--executor", "dask", "--scheduler", address, "--resume") == 0
    _same(_table(out, "toyref"), reference)


def test_killed_worker_loses_no_finished_point(cluster, references, tmp_path):
    """SIGKILL one worker process mid-run: the run completes (Dask reruns its point) or stops as
    failed with its finished points kept; --resume completes it with the reference table."""
    address, client = cluster
    cfg = _config(tmp_path, "toyref", sleep=0.25)
    reference = references(0.25)
    out = tmp_path / "out"
    pids = sorted(client.run(os.getpid).values())
    assert len(pids) == 2 and os.getpid() not in pids
    killed = []

    def kill_worker() -> None:
        deadline = time.monotonic() + 60
        while _journal(out) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(pids[0], signal.SIGKILL)  # a worker process this test's cluster started
        killed.append(pids[0])

    killer = threading.Thread(target=kill_worker)
    killer.start()
    try:
        code = _run(cfg, out, "--executor", "dask", "--scheduler", address)
    finally:
        killer.join()
    assert killed
    (run,) = (out / "toyref").iterdir()
    kept, manifest = load_run(run)
    assert code in (0, 1), manifest.get("errors")
    assert len(kept) >= 2
    if code == 1:
        assert _run(cfg, out, "--executor", "dask", "--scheduler", address, "--resume") == 0
    _same(_table(out, "toyref"), reference)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker


@pytest.mark.parametrize("executor", ["dask", "dask-local"])
def test_missing_dask_is_one_line_error(executor, monkeypatch, tmp_path, capsys):
    for name in [m for m in sys.modules if m == "distributed" or m.startswith("distributed.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    cfg = _config(tmp_path, "nodask")
    code = _run(cfg, tmp_path / "out", "--executor", executor, "--scheduler", "tcp://x:1")
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "pip install 'kpbench[dask]'" in err, err


def test_scheduler_flag_required_and_checked(tmp_path, capsys):
    cfg = _config(tmp_path, "nosched")
    assert _run(cfg, tmp_path / "out", "--executor", "dask") == 2
    assert "--scheduler: expected" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


REAL = """
name = "realdask"
seed = 3
[[part]]
kind = "scaling"
[part.grid]
mode = ["iptables", "ipvs", "nftables"]
services = [10, 300]
[part.fixed]
endpoints_per_service = 2
packets = 200
established_packets = 200
live_connections = 200
[[part]]
kind = "fairness"
[part.grid]
scheduler = ["rr", "wlc", "mh", "statistic"]
[part.fixed]
scenario = "heterogeneous"
backends = 6
connections = 800
"""


@pytest.mark.slow
def test_real_kinds_same_on_dask_and_local(cluster, tmp_path):
    """The shipped scaling and fairness kinds give identical tables on both executors (all but
    wall-clock timings)."""
    address, _ = cluster
    cfg = tmp_path / "real.toml"
    cfg.write_text(REAL)
    assert _run(cfg, tmp_path / "local", "--workers", "1") == 0
    assert _run(cfg, tmp_path / "dask", "--executor", "dask", "--scheduler", address) == 0
    timed = ["decision_ns_mean"]  # wall-clock timing of scheduler decisions (fairness kind)
    _same(_table(tmp_path / "dask", "realdask").drop(columns=timed),
          _table(tmp_path / "local", "realdask").drop(columns=timed))
