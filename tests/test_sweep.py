"""Sweeps (engine.sweep, ``dgkip-engine sweep``, issue 13 item 5): a 2×2 grid on the built-in sample gives one
table with every cell's metrics and export; grid keys and values are checked by the config's own rules; a
failing cell is recorded and the others run; Ctrl-C stops after the current cell and still writes the
table; under torchrun the cells are spread over the ranks and rank 0 writes one table."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engine import cli
from engine.config import ConfigError
from engine.export import read_manifest
from engine.sweep import cells, parse_grid

REPO = Path(__file__).resolve().parents[1]
BASE = {"data": "sample", "teacher": "nystrom", "centres": 60, "steps": 3, "ipc": 1, "device": "cpu",
        "eval_every": 0, "max_per_class": 40}


def _base(tmp_path: Path, **change) -> str:
    path = tmp_path / "base.json"
    path.write_text(json.dumps({**BASE, **change}))
    return str(path)


def test_grid_cells_are_the_product_typed_by_the_config():
    axes = parse_grid(["lam=1e-2,1e-3", "ipc=1,10", "learn_labels=true,false", "centres=none,50"])
    assert [a.values for a in axes] == [[1e-2, 1e-3], [1, 10], [True, False], [None, 50]]
    grid = cells(axes)
    assert len(grid) == 16 and grid[0] == ("lam=1e-2_ipc=1_learn_labels=true_centres=none",
                                           {"lam": 1e-2, "ipc": 1, "learn_labels": True, "centres": None})
    assert grid[1][0] == "lam=1e-2_ipc=1_learn_labels=true_centres=50"
    assert len({name for name, _ in grid}) == 16
    assert cells(parse_grid(["data=a/b,a:b"]))[1][0] == "data=a-b_cell1"      # unique after cleaning


@pytest.mark.parametrize("grid, field, says", [
    (["nope=1,2"], "grid", "choose one of"),
    (["ipc=1,abc"], "ipc", "whole number"),
    (["ipc=0,1"], "ipc", "≥ 1"),
    (["lam=-1"], "lam", "positive"),
    (["loss=squared,huber"], "loss", "is not one of squared, logistic, hinge"),
    (["lam=1e-2", "lam=1e-3"], "lam", "two --grid"),
    (["ipc=1,1"], "ipc", "listed twice"),
    (["lam"], "grid", "KEY=V1,V2"),
    (["ipc="], "ipc", "empty value"),
])
def test_bad_grid_is_refused_naming_the_key(grid, field, says):
    with pytest.raises(ConfigError) as err:
        parse_grid(grid)
    assert err.value.field == field and says in str(err.value)


def test_bad_grid_exits_2_before_any_run(tmp_path, capsys):
    code = cli.main(["sweep", "--config", _base(tmp_path), "--grid", "kernal=rbf", "--out", str(tmp_path / "sw")])
    assert code == 2 and "'kernal' is not a setting" in capsys.readouterr().err
    code = cli.main(["sweep", "--config", _base(tmp_path), "--grid", "kernel=rbf,cnn", "--out", str(tmp_path / "sw")])
    assert code == 2 and "kernel: 'cnn' is not one of linear, rbf" in capsys.readouterr().err
    assert not (tmp_path / "sw").exists()


def test_local_two_by_two_sweep_writes_one_table(tmp_path, capsys):
    out = tmp_path / "sw"
    code = cli.main(["sweep", "--config", _base(tmp_path), "--grid", "lam=1e-2,1e-3", "--grid", "ipc=1,2",
                     "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    table = json.loads((out / "sweep.json").read_text())
    names = ["lam=1e-2_ipc=1", "lam=1e-2_ipc=2", "lam=1e-3_ipc=1", "lam=1e-3_ipc=2"]
    assert [c["name"] for c in table["cells"]] == names and table["counts"] == {"ok": 4}
    md = (out / "sweep.md").read_text()
    for c in table["cells"]:
        folder, manifest, config = read_manifest(c["export"])
        assert folder == out / c["name"] and (config.lam, config.ipc) == (c["settings"]["lam"], c["settings"]["ipc"])
        assert c["metrics"]["gap"] == manifest["metrics"]["gap"] > 0 and c["seconds"] > 0
        assert 0 <= c["metrics"]["distilled_test_accuracy"] <= 1
        assert f"| {c['settings']['lam']:.4g} | {c['settings']['ipc']} | ok | {c['metrics']['gap']:.4g} |" in md
    # λ changes the teacher: the cells really ran their own settings
    assert table["cells"][0]["metrics"]["teacher_primal"] != table["cells"][2]["metrics"]["teacher_primal"]
    # a second sweep into the same folder is refused (the earlier cells are never replaced silently)
    assert cli.main(["sweep", "--config", _base(tmp_path), "--grid", "lam=1e-2", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_a_failing_cell_is_recorded_and_the_others_run(tmp_path, capsys):
    """ipc 500 asks for more images per class than the sample has (the run refuses it); mode kip with
    cross-entropy is a combination the config refuses: both are failed cells, the other two run."""
    out = tmp_path / "sw"
    code = cli.main(["sweep", "--config", _base(tmp_path), "--grid", "ipc=1,500", "--grid", "mode=dgkip,kip",
                     "--out", str(out)])
    assert code == cli.SWEEP_CELLS_FAILED
    by = {c["name"]: c for c in json.loads((out / "sweep.json").read_text())["cells"]}
    assert by["ipc=1_mode=dgkip"]["status"] == "ok" and Path(by["ipc=1_mode=dgkip"]["export"]).is_dir()
    assert by["ipc=1_mode=kip"]["status"] == "failed" and "squared" in by["ipc=1_mode=kip"]["message"]
    assert by["ipc=500_mode=dgkip"]["status"] == "failed" and "500" in by["ipc=500_mode=dgkip"]["message"]
    assert by["ipc=500_mode=dgkip"]["export"] is None and not (out / "ipc=500_mode=dgkip").exists()
    md = (out / "sweep.md").read_text()
    assert "| failed: " in md and "`dgkip-engine sweep --config " in md and "--grid ipc=1,500 --grid mode=dgkip,kip" in md


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return env


def test_ctrl_c_stops_after_the_current_cell_and_writes_the_table(tmp_path):
    base = _base(tmp_path, steps=400)
    p = subprocess.Popen([sys.executable, "-m", "engine", "sweep", "--config", base, "--grid", "ipc=1,2,3",
                          "--out", "sw"], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        while True:
            line = p.stderr.readline()
            assert line, "the sweep ended before its first cell"
            if line.startswith("cell 1/3"):
                break
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=180)
    finally:
        p.kill()
        p.wait()
    assert p.returncode == 130, err[-2000:]
    assert "stopping after the current cell" in err
    table = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert table["interrupted"] and [c["status"] for c in table["cells"]] == ["ok", "not run", "not run"]
    assert (tmp_path / "sw" / "ipc=1").is_dir() and not (tmp_path / "sw" / "ipc=2").exists()


def test_torchrun_sweep_spreads_cells_over_ranks_and_writes_one_table(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                        "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "engine", "sweep",
                        "--config", _base(tmp_path), "--grid", "lam=1e-2,1e-3", "--grid", "ipc=1,2", "--out", "sw"],
                       cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count('"table"') == 1                       # rank 0 alone reports
    table = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert table["processes"] == 2 and table["counts"] == {"ok": 4}
    assert [c["rank"] for c in table["cells"]] == [0, 1, 0, 1]
    assert "(rank 1)" in r.stderr and "(rank 0)" in r.stderr
    for c in table["cells"]:
        manifest = read_manifest(c["export"])[1]
        assert manifest["metrics"]["processes"] == 1             # each cell is an ordinary single-process run
        assert c["metrics"]["gap"] == manifest["metrics"]["gap"]
    assert "2 processes (cell i on rank i mod 2)" in (tmp_path / "sw" / "sweep.md").read_text()


def test_a_rank_lost_in_a_sweep_is_named_and_the_finished_cells_are_tabled(tmp_path):
    """Two env:// ranks (as a multi-node job without torchrun's agent); rank 1 is killed in its cell: rank 0
    still writes the table of its own cells, marks rank 1's as lost, and exits 4."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    base = _base(tmp_path, steps=400)
    procs = [subprocess.Popen([sys.executable, "-m", "engine", "sweep", "--config", base, "--grid", "ipc=1,2",
                               "--out", "sw"], cwd=tmp_path,
                              env={**_env(), "WORLD_SIZE": "2", "RANK": str(r), "LOCAL_RANK": str(r),
                                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "DGKIP_SWEEP_WAIT_S": "20"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    try:
        while True:
            line = procs[1].stderr.readline()
            assert line, "rank 1 ended before its cell"
            if line.startswith("cell 2/2"):
                break
        procs[1].kill()
        out, err = procs[0].communicate(timeout=120)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert procs[0].returncode == 4, err[-2000:]
    assert "rank 1 stopped answering" in err
    table = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert [c["status"] for c in table["cells"]] == ["ok", "lost"]
    assert "rank 1 did not report" in table["cells"][1]["message"]
