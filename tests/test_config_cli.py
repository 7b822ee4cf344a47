"""The run config (validation, JSON round-trip) and the headless CLI end to end."""
import json

import numpy as np
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
    # the saved config reproduces the run's settings through --config, and so does the export's manifest
    assert DistillConfig.load(tmp_path / "run.json").kernel_params == {"depth": 2}
    assert DistillConfig.load(out / "manifest.json") == ds.config      # (its kernel parameters resolved)
    assert manifest["outcome"] == "finished"
    # an existing output folder is refused with exit status 2 and a message
    assert main(["distill", "--data", "sample", "--out", str(out), "--steps", "1"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_save_config_never_replaces_an_input_or_a_file_that_is_not_settings(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, x=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8), y=np.repeat([0, 1], 20),
             classes=np.array(["a", "b"]))
    before = data.read_bytes()
    base = ["distill", "--data", str(data), "--steps", "1", "--ipc", "1"]
    assert main(base + ["--out", str(tmp_path / "o1"), "--save-config", str(data)]) == 2
    assert "is the run's --data input" in capsys.readouterr().err
    assert data.read_bytes() == before and not (tmp_path / "o1").exists()

    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    assert main(base + ["--out", str(tmp_path / "o2"), "--save-config", str(notes)]) == 2
    assert "exists and is not a settings file" in capsys.readouterr().err and notes.read_text() == "my notes"

    settings = tmp_path / "run.json"
    DistillConfig(ipc=3).save(settings)                   # an earlier settings file is replaced
    assert main(base + ["--out", str(tmp_path / "o3"), "--save-config", str(settings)]) == 0
    capsys.readouterr()
    assert DistillConfig.load(settings).ipc == 1
    manifest = tmp_path / "o3" / "manifest.json"          # an export's manifest is not a settings file
    text = manifest.read_text()
    assert main(base + ["--out", str(tmp_path / "o4"), "--save-config", str(manifest)]) == 2
    assert "is not a settings file" in capsys.readouterr().err and manifest.read_text() == text


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


def _other_value(name: str):
    """A valid value of setting ``name`` that differs from its default, and its command-line spelling."""
    from engine.config import SETTINGS

    setting, default = SETTINGS[name], getattr(DistillConfig(), name)
    spec = setting.spec
    if setting.kind == "choice":
        value = next(o for o in spec.options() if o != default)
        return value, [value]
    if setting.kind == "int":
        value = (default if default is not None else int(spec.lo)) + 1
        return value, [str(value)]
    if setting.kind == "float":
        value = default / 2 if default else 0.5
        return value, [repr(value)]
    if setting.kind == "path":
        return "some/folder", ["some/folder"]
    if setting.kind == "names":
        return ["cat", "dog"], ["cat, dog"]
    if setting.kind == "params":
        return {"depth": 3, "bias": 0.5}, ["depth=3", "--kernel-param", "bias=0.5"]
    raise AssertionError(f"{name}: no command-line test value for kind {setting.kind!r}")


def test_every_config_field_has_a_working_cli_flag():
    """Each DistillConfig field is declared once (engine.config.SETTINGS) and settable from the command
    line: its flag exists on ``distill`` and parsing it sets that field, and only that field. Only the
    schema version, which the app writes, has no flag."""
    import dataclasses

    from engine.cli import config_changes, make_parser
    from engine.config import SETTINGS

    parser = make_parser()
    names = [f.name for f in dataclasses.fields(DistillConfig)]
    assert list(SETTINGS) == names
    assert [n for n in names if SETTINGS[n].cli_flag is None] == ["schema_version"]
    for name in names:
        flag = SETTINGS[name].cli_flag
        if flag is None:
            continue
        if SETTINGS[name].kind == "bool":
            for spelling, value in ((flag, True), ("--no-" + flag[2:], False)):
                args = parser.parse_args(["distill", "--out", "o", spelling])
                assert config_changes(args) == {name: value}, spelling
            continue
        value, words = _other_value(name)
        args = parser.parse_args(["distill", "--out", "o", flag, *words])
        changes = config_changes(args)
        assert changes == {name: value}, (flag, changes)
        assert getattr(DistillConfig().replace(**changes), name) == value
    # the established spellings still work
    args = parser.parse_args(["distill", "--out", "o", "--max-per-class", "7", "--kernel-param", "depth=2",
                              "--learn-labels", "--test-data", "t.npz"])
    assert config_changes(args) == {"max_per_class": 7, "kernel_params": {"depth": 2}, "learn_labels": True,
                                    "test_data": "t.npz"}


def test_new_settings_reach_the_run_from_the_cli(tmp_path, capsys):
    """The settings that had no flag before (optimizer, zca_reg, teacher_max_iter, snapshot_every,
    kip_batch) reach the saved config of a run."""
    rc = main(["distill", "--data", "sample", "--out", str(tmp_path / "o"), "--steps", "2", "--max-per-class", "20",
               "--optimizer", "sgd", "--zca-reg", "0.25", "--teacher-max-iter", "50", "--snapshot-every", "1",
               "--kip-batch", "300", "--save-config", str(tmp_path / "run.json")])
    assert rc == 0, capsys.readouterr().err
    saved = DistillConfig.load(tmp_path / "run.json")
    assert (saved.optimizer, saved.zca_reg, saved.teacher_max_iter, saved.snapshot_every, saved.kip_batch) == \
        ("sgd", 0.25, 50, 1, 300)


def test_a_registered_kernel_is_a_valid_choice():
    """Kernel and loss names come from the engines' registries: a kernel added with
    engine.kernels.register passes validation and is offered by the CLI."""
    from engine import config
    from engine import kernels
    from engine.cli import make_parser
    from engine.losses import loss_names

    assert config.LOSSES == tuple(loss_names()) and config.KERNELS == tuple(kernels.kernel_names())
    with pytest.raises(ConfigError, match="kernel: 'mine' is not one of"):
        DistillConfig(kernel="mine").validate()
    kernels.register("mine", kernels._REGISTRY["linear"])
    try:
        assert DistillConfig(kernel="mine").validate().kernel == "mine"
        assert "mine" in config.KERNELS
        assert make_parser().parse_args(["distill", "--out", "o", "--kernel", "mine"]).kernel == "mine"
    finally:
        del kernels._REGISTRY["mine"]


def test_a_field_without_a_declaration_is_refused():
    """A DistillConfig field added without its Setting cannot go unnoticed: the declarations refuse it."""
    import dataclasses

    from engine import config

    bare = dataclasses.make_dataclass("Bare", [("extra", int, dataclasses.field(default=0))],
                                      bases=(config.DistillConfig,))
    with pytest.raises(TypeError, match="extra has no Setting declaration"):
        config._declarations(bare)


def test_transfer_command_keeps_its_old_name_evaluate():
    """'transfer' is the one word for training networks on a set; scripts written for the old
    'evaluate' command still reach the same command with the same options."""
    from engine.cli import cmd_transfer, make_parser
    argv = ["--distilled", "out", "--data", "d.npz", "--networks", "mlp", "--seeds", "2"]
    new, old = make_parser().parse_args(["transfer", *argv]), make_parser().parse_args(["evaluate", *argv])
    assert new.func is old.func is cmd_transfer
    assert (new.distilled, new.networks, new.seeds) == (old.distilled, old.networks, old.seeds) == ("out", "mlp", 2)
