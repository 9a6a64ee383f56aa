"""notebooks/*.ipynb execute top to bottom (nbclient) on a tiny run made here, and are stored
without outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import cli

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TINY = """
name = "nbtiny"
seed = 2
repeats = 2
[[part]]
kind = "scaling"
[part.grid]
mode = ["iptables", "ipvs"]
services = [10, 100]
[part.fixed]
endpoints_per_service = 2
packets = 100
established_packets = 100
live_connections = 100
[[part]]
kind = "fairness"
[part.grid]
scheduler = ["rr", "lc"]
[part.fixed]
scenario = "heterogeneous"
backends = 4
connections = 300
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("nbrun")
    cfg = tmp / "nbtiny.toml"
    cfg.write_text(TINY)
    assert cli.main(["run", str(cfg), "--out", str(tmp / "out"), "--workers", "1", "--quiet",
                     "--no-report"]) == 0
    (run,) = (tmp / "out" / "nbtiny").iterdir()
    return run


@pytest.mark.parametrize("name", ["scaling", "fairness"])
def test_notebook_runs_on_a_tiny_run(name, tiny_run, monkeypatch):
    monkeypatch.setenv("KPBENCH_RUN", str(tiny_run))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel draws inline
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    rows = {"scaling": 8, "fairness": 4}[name]  # grid points x 2 repeats
    assert f"{tiny_run}: experiment nbtiny, status complete, {rows} {name} rows" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # plots were drawn
    assert not any(o.get("output_type") == "error" for o in outputs)


@pytest.mark.parametrize("name", ["scaling", "fairness"])
def test_notebook_is_stored_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])
