"""The run config (validation, JSON round-trip) and the headless CLI end to end."""
import json

import pytest

from engine.cli import main
from engine.config import ConfigError, DistillConfig
from engine.export import load_distilled


def test_config_round_trip_and_validation(tmp_path):
    cfg = DistillConfig(loss="hinge", kernel="rbf", kernel_params={"bandwidth": 3.0}, classes=["1", "7"], ipc=3)
    cfg.save(tmp_path / "c.json")
    assert DistillConfig.load(tmp_path / "c.json") == cfg
    with pytest.raises(ConfigError, match="lam"):
        DistillConfig(lam=-1).validate()
    with pytest.raises(ConfigError, match="KIP"):
        DistillConfig(mode="kip", loss="hinge").validate()
    with pytest.raises(ConfigError, match="unknown setting"):
        DistillConfig.from_dict({"ipcc": 2})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        DistillConfig.load(tmp_path / "bad.json")


def test_cli_distills_exports_and_reopens(tmp_path, capsys):
    out = tmp_path / "export"
    rc = main(["distill", "--data", "sample", "--out", str(out), "--steps", "3", "--ipc", "1",
               "--loss", "logistic", "--kernel", "nngp-fc", "--kernel-param", "depth=2", "--max-per-class", "30",
               "--save-config", str(tmp_path / "run.json")])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["metrics"]["steps"] == 3
    ds = load_distilled(out)
    assert ds.images.shape[0] == 10 and ds.config.kernel_params["depth"] == 2 and ds.config.loss == "logistic"
    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("teacher_test_accuracy", "distilled_test_accuracy", "random_subset_test_accuracy", "gap",
                "radius", "certified_consistency", "teacher_gap", "steps", "seconds"):
        assert key in manifest["metrics"]
    # the saved config reproduces the run's settings through --config
    assert DistillConfig.load(tmp_path / "run.json").kernel_params == {"depth": 2}
    # an existing output folder is refused with exit status 2 and a message
    assert main(["distill", "--data", "sample", "--out", str(out), "--steps", "1"]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--classes", "1,nope"], "nope"),
    (["--ipc", "1000"], "fewer"),
    (["--lam", "0"], "lam"),
    (["--data", "/nonexistent/folder"], "nonexistent"),
    (["--kernel-param", "depth"], "KEY=VALUE"),
])
def test_cli_bad_input_exits_2_with_message(tmp_path, capsys, args, message):
    base = ["distill", "--data", "sample", "--out", str(tmp_path / "o"), "--steps", "1"]
    assert main(base + args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_memory_budget_refusal(tmp_path, capsys):
    rc = main(["distill", "--data", "sample", "--out", str(tmp_path / "o"), "--steps", "1", "--teacher", "exact",
               "--memory-budget-gb", "0.001"])
    assert rc == 2
    assert "memory budget" in capsys.readouterr().err
