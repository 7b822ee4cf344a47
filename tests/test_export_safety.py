"""Issue 14, items 1 and 6: a finished result is never lost. The output location is checked before
any work, a failing export goes to a recovery folder, Ctrl-C during the export still exports,
concurrent exports to one target get a clear message, leftovers of killed exports are tidied, and
exports honour the umask."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import threading
from collections import namedtuple
from pathlib import Path

import pytest

import engine.distill
import engine.export
import engine.output
from engine.cli import RECOVERED, main
from engine.export import export_distilled, load_distilled, save_result
from engine.output import ExportError, TargetLock, check_target_location
from test_export import make_result

RUN = ["distill", "--data", "sample", "--steps", "2", "--max-per-class", "20", "--kernel", "linear",
       "--loss", "squared", "--eval-every", "0"]


def hidden(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith("."))


@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if the CLI reads the dataset: a refusal must come before any work."""
    def refuse(*args, **kwargs):
        raise AssertionError("the dataset was read before the output location was refused")
    monkeypatch.setattr("engine.cli.load_dataset", refuse)


# ------------------------------------------------------------------ checks before any work
def test_output_below_a_file_is_refused_before_reading_data(tmp_path, capsys, no_loading):
    (tmp_path / "file").write_text("x")
    assert main([*RUN, "--out", str(tmp_path / "file" / "sub" / "out")]) == 2
    err = capsys.readouterr().err
    assert "is a file, so no folder can be created below it" in err and "Traceback" not in err


def test_unwritable_output_is_refused_before_reading_data(tmp_path, capsys, monkeypatch, no_loading):
    def read_only(*args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(engine.output.tempfile, "mkdtemp", read_only)
    assert main([*RUN, "--out", str(tmp_path / "new" / "out")]) == 2
    assert f"{tmp_path}: cannot be written (Read-only file system)" in capsys.readouterr().err


def test_existing_and_overlong_targets_are_refused_before_reading_data(tmp_path, capsys, no_loading):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    assert main([*RUN, "--out", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err          # not "--overwrite": it would only lead to the same refusal
    assert "not a distilled-set export" in err and "--overwrite" not in err
    assert main([*RUN, "--out", str(tmp_path / "taken"), "--overwrite"]) == 2
    assert "not a distilled-set export" in capsys.readouterr().err
    assert main([*RUN, "--out", str(tmp_path / ("é" * 200))]) == 2
    assert "400 bytes, longer than file systems allow" in capsys.readouterr().err


def test_too_little_free_space_is_refused_before_the_run(tmp_path, capsys, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(engine.output.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 10**6, 10**6))

    def no_run(*args, **kwargs):
        raise AssertionError("the run started although the export cannot fit")
    monkeypatch.setattr(engine.distill, "run", no_run)
    assert main([*RUN, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "has 1.0 MiB free, the export needs about" in err and not (tmp_path / "out").exists()


def test_export_size_estimate_is_an_upper_bound(tmp_path):
    result = make_result(method="zca", ipc=3)
    out = export_distilled(result, tmp_path / "e")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    estimate = engine.export.estimate_export_bytes(len(result.images), result.images.shape[1:], len(result.classes),
                                                   len(result.curves), zca=True)
    assert size <= estimate < 10 * size + 2**20


# ------------------------------------------------------------------ a failing export keeps the result
def fail_writes_into(monkeypatch, *names: str):
    """Make writing an export fail with ENOSPC when its target's name is one of ``names``."""
    real = engine.export._write_export

    def write(result, folder):
        if any(folder.name.startswith(f".{n}.{os.getpid()}.") for n in names):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(result, folder)
    monkeypatch.setattr(engine.export, "_write_export", write)


def test_failed_export_goes_to_a_recovery_folder_beside_the_target(tmp_path, capsys, monkeypatch):
    fail_writes_into(monkeypatch, "out")
    assert main([*RUN, "--out", str(tmp_path / "out")]) == RECOVERED
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    saved = Path(printed["export"])
    assert saved.parent == tmp_path and saved.name.startswith("out.recovered-")
    assert "No space left on device" in captured.err and str(saved) in captured.err and "Traceback" not in captured.err
    assert load_distilled(saved).images.shape[0] == 10
    assert not (tmp_path / "out").exists() and hidden(tmp_path) == []


def test_recovery_falls_back_to_the_app_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("DGKIP_DATA_DIR", str(tmp_path / "appdata"))
    fail_writes_into(monkeypatch, "out")
    real = engine.export._write_export

    def write(result, folder):              # beside the target fails too
        if ".out.recovered-" in folder.name and folder.parent == tmp_path:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(result, folder)
    monkeypatch.setattr(engine.export, "_write_export", write)
    outcome = save_result(make_result(), tmp_path / "out")
    assert outcome.recovered and outcome.path.parent == tmp_path / "appdata" / "recovered"
    assert "No space left" in outcome.error and "Permission denied" in " ".join(outcome.notes)
    assert str(outcome.path) in outcome.message() and load_distilled(outcome.path).classes == make_result().classes


def test_result_saved_nowhere_is_an_export_error_naming_every_attempt(tmp_path, monkeypatch):
    monkeypatch.setenv("DGKIP_DATA_DIR", str(tmp_path / "appdata"))

    def write(result, folder):
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(engine.export, "_write_export", write)
    with pytest.raises(ExportError, match="could not be saved .*Input/output error.*also tried"):
        save_result(make_result(), tmp_path / "out")


# ------------------------------------------------------------------ Ctrl-C
def interrupt_during_export(monkeypatch, times: int):
    real = engine.export._write_export

    def write(result, folder):
        for _ in range(times):
            os.kill(os.getpid(), signal.SIGINT)
        return real(result, folder)
    monkeypatch.setattr(engine.export, "_write_export", write)


def test_first_ctrl_c_during_the_export_still_exports(tmp_path, capsys, monkeypatch):
    interrupt_during_export(monkeypatch, 1)
    assert main([*RUN, "--out", str(tmp_path / "out")]) == 0
    assert "finishing the export" in capsys.readouterr().err
    assert load_distilled(tmp_path / "out").images.shape[0] == 10


def test_second_ctrl_c_during_the_export_aborts_cleanly(tmp_path, capsys, monkeypatch):
    interrupt_during_export(monkeypatch, 2)
    assert main([*RUN, "--out", str(tmp_path / "out")]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and hidden(tmp_path) == []


def test_first_ctrl_c_during_the_run_stops_and_exports(tmp_path, capsys, monkeypatch):
    real = engine.distill.run

    def run(config, *args, **kwargs):
        probe = config.data == "(step timing)"          # the estimate's step measurement runs run() too
        for event in real(config, *args, **kwargs):
            if isinstance(event, engine.distill.Step) and event.step == 1 and not probe:
                os.kill(os.getpid(), signal.SIGINT)
            yield event
    monkeypatch.setattr(engine.distill, "run", run)
    assert main([*RUN[:-4], "--steps", "50", "--out", str(tmp_path / "out")]) == 130
    assert json.loads(capsys.readouterr().out)["reason"] == "stopped"
    manifest = load_distilled(tmp_path / "out").manifest
    assert manifest["metrics"]["steps"] < 50 and manifest["outcome"] == "stopped"     # the recipe said 50


def test_first_ctrl_c_before_the_steps_says_the_teacher_is_fitted_first(tmp_path, capsys, monkeypatch):
    """Ctrl-C while the teacher is fitted does not stop it (the certificate needs it): the message says
    so (it said "stopping after the current step" for a minute-long Nyström solve), and the run stops
    at step 0 and exports its initial images."""
    real = engine.distill.run

    def run(config, *args, **kwargs):
        for event in real(config, *args, **kwargs):
            yield event                                 # the command line has read the teacher's stage
            if isinstance(event, engine.distill.Stage) and event.name == "teacher" and config.data != "(step timing)":
                os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.setattr(engine.distill, "run", run)
    assert main([*RUN[:-4], "--steps", "50", "--out", str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err
    assert "stopping before the first step: once the teacher is fitted" in err and "current step" not in err
    manifest = load_distilled(tmp_path / "out").manifest
    assert manifest["metrics"]["steps"] == 0 and manifest["outcome"] == "stopped"


def test_first_ctrl_c_during_the_distance_to_the_exact_teacher_skips_it_and_exports(tmp_path, capsys, monkeypatch):
    """Ctrl-C while a Nyström run certifies its distance to the exact teacher skips that check (the
    run's stop request ends it, engine.exact_gap) and says so (it said "certifying, then exporting")."""
    real = engine.distill.run

    def run(config, *args, **kwargs):
        for event in real(config, *args, **kwargs):
            yield event
            if isinstance(event, engine.distill.Stage) and event.name == "certify-exact":
                os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.setattr(engine.distill, "run", run)
    args = [*RUN[:-4], "--kernel", "ntk-fc", "--teacher", "nystrom", "--centres", "20", "--certify-exact",
            "--out", str(tmp_path / "out")]
    assert main(args) == 0                                # every step was made: the run finished
    err = capsys.readouterr().err
    assert "skipping the distance to the exact teacher; exporting the result" in err
    metrics = load_distilled(tmp_path / "out").manifest["metrics"]
    assert metrics["steps"] == 2 and metrics["radius_to_exact_teacher"] is None


# ------------------------------------------------------------------ concurrent exports, leftovers
def test_concurrent_exports_to_one_target_one_wins_the_other_is_told(tmp_path, monkeypatch):
    writing, release = threading.Event(), threading.Event()
    real = engine.export._write_export

    def slow(result, folder):
        writing.set()
        assert release.wait(30)
        return real(result, folder)
    monkeypatch.setattr(engine.export, "_write_export", slow)
    outcome: dict[str, object] = {}
    first = threading.Thread(target=lambda: outcome.setdefault("first", export_distilled(make_result(), tmp_path / "t")))
    first.start()
    assert writing.wait(30)
    monkeypatch.setattr(engine.export, "_write_export", real)
    with pytest.raises(ExportError, match="another export to this folder is running"):
        export_distilled(make_result(), tmp_path / "t")
    recovered = save_result(make_result(), tmp_path / "t")      # the loser's result is kept elsewhere
    release.set()
    first.join(30)
    assert outcome["first"] == tmp_path / "t" and load_distilled(tmp_path / "t").images.shape[0] == 8
    assert recovered.recovered and "another export" in recovered.error and load_distilled(recovered.path)
    assert hidden(tmp_path) == []


def test_target_created_by_someone_else_meanwhile_is_a_clear_message(tmp_path, monkeypatch):
    real = engine.export._write_export

    def other_tool_wins(result, folder):
        real(result, folder)
        (tmp_path / "t").mkdir()
        (tmp_path / "t" / "theirs.txt").write_text("x")
    monkeypatch.setattr(engine.export, "_write_export", other_tool_wins)
    with pytest.raises(FileExistsError, match="was created by something else while this export was written"):
        export_distilled(make_result(), tmp_path / "t")
    assert (tmp_path / "t" / "theirs.txt").exists() and hidden(tmp_path) == []


def test_lock_is_released_and_removed(tmp_path):
    with TargetLock(tmp_path / "t"):
        with pytest.raises(ExportError):
            TargetLock(tmp_path / "t").__enter__()
    assert hidden(tmp_path) == []
    with TargetLock(tmp_path / "t"):
        pass


def test_leftovers_of_a_killed_export_are_reported_then_tidied(tmp_path, capsys):
    first = export_distilled(make_result(), tmp_path / "t")
    partial = tmp_path / ".t.99999.0badf00d.partial"
    shutil.copytree(first, partial)
    old = tmp_path / ".t.deadbeef.old"
    old.mkdir()
    notes = check_target_location(tmp_path / "t", overwrite=True)
    assert "2 hidden temporary folders from an interrupted export" in notes[0]
    tidied: list[str] = []
    export_distilled(make_result(), tmp_path / "t", overwrite=True, notes=tidied)
    assert hidden(tmp_path) == [] and len(tidied) == 2 and all("left by an interrupted export" in n for n in tidied)


def test_interrupted_replacement_is_restored(tmp_path):
    first = export_distilled(make_result(), tmp_path / "t")
    os.rename(first, tmp_path / ".t.cafe0123.old")          # killed between the two renames
    notes: list[str] = []
    with pytest.raises(FileExistsError):
        export_distilled(make_result(), tmp_path / "t", notes=notes)
    assert "restored the earlier export" in notes[0] and load_distilled(tmp_path / "t").images.shape[0] == 8


# ------------------------------------------------------------------ 6. the umask
@pytest.mark.parametrize("umask,dirs,files", [(0o022, 0o755, 0o644), (0o002, 0o775, 0o664), (0o077, 0o700, 0o600)])
def test_exports_honour_the_umask(tmp_path, umask, dirs, files):
    previous = os.umask(umask)
    try:
        out = export_distilled(make_result(), tmp_path / "e")
        engine.export.update_manifest(out, "transfer", {})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(out.stat().st_mode) == dirs
    for path in out.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (dirs if path.is_dir() else files), path


def test_a_folder_that_is_no_export_is_refused_without_offering_overwrite(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("keep")
    for overwrite in (False, True):          # the refusal is the same: --overwrite would not help
        with pytest.raises(FileExistsError) as err:
            check_target_location(tmp_path / "mine", overwrite=overwrite)
        assert "is not a distilled-set export" in str(err.value) and "--overwrite" not in str(err.value)
    assert (tmp_path / "mine" / "keep.txt").read_text() == "keep"


def test_a_file_given_as_an_export_is_named_itself(tmp_path, capsys):
    data = tmp_path / "data.npz"
    data.write_bytes(b"not an export")
    assert main(["transfer", "--distilled", str(data), "--data", "sample"]) == 2
    err = capsys.readouterr().err
    assert f"{data}: is a file, not a distilled-set export" in err and "manifest.json" not in err
