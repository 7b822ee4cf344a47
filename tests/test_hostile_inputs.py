"""Issue 14, items 2–5: typed settings, bounded resources, names that always work, nothing skipped
silently. Each case was a traceback, a silent acceptance or a memory blow-up before."""
from __future__ import annotations

import gzip
import io
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.cli import main
from engine.config import ConfigError, DistillConfig
from engine.data import DatasetError, load_dataset
from engine.data.folder import MAX_IMAGE_PIXELS
from engine.distill import prepare_dataset
from engine.export import class_folders, export_distilled, load_distilled
from engine.text import printable
from test_export import make_result


def png(h: int = 6, w: int = 6, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def folder(root: Path, counts: dict[str, int]) -> Path:
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / name / f"{i}.png").write_bytes(png(seed=i))
    return root


# ------------------------------------------------------------------ 2. typed settings
@pytest.mark.parametrize("field,value,fix", [
    ("seed", "abc", "whole number"),
    ("holdout_fraction", "0.2", "positive number < 1"),
    ("classes", 5, "list of class names"),
    ("classes", "zero", "list of class names"),
    ("classes", ["a", "a"], "listed twice"),
    ("classes", ["a", None], "not a class name"),
    ("data", 123, "path as text"),
    ("data", "a\0b", "path as text"),
    ("memory_budget_gb", 1e308, "≤ 1,048,576"),
    ("lam", True, "a positive number ≤ 1,000,000"),
    ("lam", float("nan"), "a positive number"),
    ("ipc", 2.0, "whole number"),
    ("ipc", 10**40, "≤ 2,147,483,647"),
    ("steps", None, "whole number"),
    ("learn_labels", "yes", "true or false"),
    ("certify_exact", 1, "true or false"),
    ("teacher", "big", "not one of"),
    ("centres", 1, "≥ 2"),
    ("kernel_params", {"depth": "abc"}, "refuses"),
    ("kernel_params", {"gamma": 2}, "kernel 'ntk-fc' has no parameter 'gamma'; its parameters are depth, w_std, b_std"),
    ("kernel_params", {"depth": 10**9}, "between 1 and 100"),
    ("kernel_params", {"depth": [1]}, "not a number"),
    ("kernel_params", [1], "mapping"),
    ("schema_version", "1", "whole number"),
])
def test_config_field_errors_name_field_value_and_fix(field, value, fix):
    with pytest.raises(ConfigError) as err:
        DistillConfig.from_dict({field: value})
    assert err.value.field == field and fix in str(err.value)


def test_config_consistency_and_json_shapes(tmp_path):
    with pytest.raises(ConfigError, match="centres.*'exact'"):
        DistillConfig.from_dict({"teacher": "exact", "centres": 100})
    assert DistillConfig.from_dict({"classes": [3, 5]}).classes == ["3", "5"]    # numbers written as JSON numbers
    for text, match in [("[1, 2]", "JSON object"), ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
                        ('{"seed": ' + "9" * 5000 + "}", "too long"), ('{"lam": NaN}', "lam")]:
        with pytest.raises(ConfigError, match=match):
            DistillConfig.from_json(text)
    (tmp_path / "c.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(ConfigError, match="not UTF-8"):
        DistillConfig.load(tmp_path / "c.json")


@pytest.mark.parametrize("cfg", [{"seed": "abc"}, {"data": 123}, {"classes": "zero"}, {"lam": True},
                                 {"memory_budget_gb": 1e308}])
def test_cli_config_file_errors_exit_2(tmp_path, capsys, cfg):
    (tmp_path / "run.json").write_text(json.dumps(cfg))
    assert main(["distill", "--config", str(tmp_path / "run.json"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{next(iter(cfg))}:" in err and "Traceback" not in err and not (tmp_path / "o").exists()


def test_cli_flags_are_validated(tmp_path, capsys):
    base = ["distill", "--data", "sample", "--out", str(tmp_path / "o"), "--steps", "1"]
    for extra, field in ([("--lam", "nan"), "lam"], [("--seed", "-1"), "seed"],
                         [("--kernel-param", "depth=x"), "kernel_params"], [("--classes", "zero"), "classes"]):
        assert main(base + list(extra)) == 2
        assert f"{field}:" in capsys.readouterr().err


def broken_export(tmp_path: Path, **change) -> Path:
    out = export_distilled(make_result(method="standardize"), tmp_path / "e")
    with np.load(out / "distilled.npz") as f:
        arrays = dict(f)
    arrays.update(change)
    np.savez(out / "distilled.npz", **arrays)
    return out


@pytest.mark.parametrize("change,match", [
    ({"labels": np.arange(8) + 3}, "labels 3…10 but 4 class names"),
    ({"classes": np.array(["cat", "dog"])}, "labels 0…3 but 2 class names"),
    ({"images": np.full((8, 4, 4, 3), np.nan, np.float32)}, "non-finite"),
    ({"alpha": np.zeros((8, 2))}, "alpha"),
    ({"classes": np.array(["a", "a", "b", "c"])}, "names a class twice"),
])
def test_export_arrays_are_checked_on_load(tmp_path, change, match):
    out = broken_export(tmp_path, **change)
    with pytest.raises(DatasetError, match=match):
        load_distilled(out)


@pytest.mark.parametrize("manifest,match", [
    ({"schema_version": "1"}, "schema_version"), ({"classes": 5}, "'classes'"), ({"n_images": "x"}, "n_images"),
    ({"transfer": []}, "'transfer'"), ({"config": {"seed": "abc"}}, "config.seed"),
])
def test_manifest_fields_are_typed(tmp_path, manifest, match):
    out = export_distilled(make_result(), tmp_path / "e")
    data = json.loads((out / "manifest.json").read_text())
    data.update(manifest)
    (out / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=match):
        load_distilled(out)


def test_deeply_nested_manifest_is_damaged_not_recursion_error(tmp_path):
    out = export_distilled(make_result(), tmp_path / "e")
    (out / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(DatasetError, match="nested too deeply"):
        load_distilled(out)


def test_init_from_checked_before_the_teacher(tmp_path, capsys):
    args = ["distill", "--data", "sample", "--steps", "1", "--max-per-class", "20", "--loss", "squared",
            "--kernel", "linear"]
    assert main([*args, "--out", str(tmp_path / "first")]) == 0
    capsys.readouterr()
    first = tmp_path / "first"
    with np.load(first / "distilled.npz") as f:
        arrays = dict(f)
    arrays["labels"] = arrays["labels"] + 7          # labels beyond the 10 classes: a RuntimeError before
    np.savez(first / "distilled.npz", **arrays)
    assert main([*args, "--init-from", str(first), "--out", str(tmp_path / "second")]) == 2
    err = capsys.readouterr().err
    assert "labels 7…16 but 10 class names" in err and "teacher" not in err
    arrays["labels"] -= 7
    arrays["images"][0, 0, 0, 0] = np.nan
    np.savez(first / "distilled.npz", **arrays)
    assert main([*args, "--init-from", str(first), "--out", str(tmp_path / "second")]) == 2
    assert "non-finite" in capsys.readouterr().err
    cfg = DistillConfig(data="sample", init_from=str(first), classes=["1", "2"])
    arrays["images"][0, 0, 0, 0] = 0
    np.savez(first / "distilled.npz", **arrays)
    with pytest.raises(DatasetError, match="was distilled for the classes"):
        prepare_dataset(cfg, None)


def test_init_from_must_match_the_ipc_and_is_carried_across_preprocessings(tmp_path, capsys):
    from engine.data.preprocess import Preprocessor
    from engine.distill import _initial_images
    args = ["distill", "--data", "sample", "--steps", "2", "--max-per-class", "20", "--loss", "squared",
            "--kernel", "linear"]
    first = tmp_path / "first"
    assert main([*args, "--ipc", "2", "--preprocess", "zca", "--out", str(first)]) == 0
    capsys.readouterr()
    assert main([*args, "--ipc", "1", "--init-from", str(first), "--out", str(tmp_path / "second")]) == 2
    err = capsys.readouterr().err
    assert "holds 2 images of each class, this run asks for 1" in err and "(ipc, --ipc) to 2" in err
    assert not (tmp_path / "second").exists()
    assert main([*args, "--ipc", "2", "--init-from", str(first), "--out", str(tmp_path / "third")]) == 0
    assert json.loads((tmp_path / "third" / "manifest.json").read_text())["n_images"] == 20
    # ZCA features of the export → the standardised features of the same (unclipped) pixels
    prev = load_distilled(first)
    rng = np.random.default_rng(0)
    standard = Preprocessor.fit(rng.integers(0, 256, (50, 8, 8, 1), dtype=np.uint8))
    cfg = DistillConfig(data="sample", init_from=str(first), ipc=2)
    images, labels = _initial_images(cfg, None, None, 10, standard)
    assert np.array_equal(labels, prev.labels)
    assert np.allclose(standard.inverse(images, clip=False), prev.preprocess.inverse(prev.images, clip=False),
                       atol=1e-5)
    assert not np.allclose(images, prev.images, atol=1e-2)         # the features did change
    same, _ = _initial_images(cfg, None, None, 10, prev.preprocess)
    assert np.array_equal(same, prev.images)                        # the same map: taken as they are


# ------------------------------------------------------------------ 3. bounded resources
def npz_with_header(path: Path, arrays: dict[str, tuple[str, tuple, bytes]]) -> Path:
    """An .npz whose members have the given header (dtype descr, shape) and raw data, whatever they say."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, (descr, shape, data) in arrays.items():
            header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
            header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
            zf.writestr(f"{name}.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data)
    return path


def test_npz_labels_of_two_billion_do_not_allocate_per_value(tmp_path):
    x = np.zeros((6, 4, 4), np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 2_000_000_000] * 3))
    ds = load_dataset(tmp_path / "d.npz")
    assert ds.classes == ["0", "2000000000"] and sorted(set(ds.y_train.tolist())) == [0, 1]


def test_npz_header_claiming_a_huge_shape_is_refused_with_numbers(tmp_path):
    path = npz_with_header(tmp_path / "d.npz", {"x": ("|u1", (10**6, 1000, 1000), b"\0" * 16),
                                                 "y": ("<i8", (2,), b"\0" * 16)})
    with pytest.raises(DatasetError, match="truncated or damaged: array 'x'.*needs 1,000,000,000,000 bytes"):
        load_dataset(path)


def test_npz_that_decompresses_over_the_budget_is_refused_before_decoding(tmp_path):
    np.savez_compressed(tmp_path / "d.npz", x=np.zeros((400, 64, 64), np.uint8), y=np.arange(400) % 2)
    assert (tmp_path / "d.npz").stat().st_size < 20_000
    with pytest.raises(DatasetError, match=r"decoding its array 'x' takes 1\.6 MiB, over the memory budget of 1\.0 MiB"):
        load_dataset(tmp_path / "d.npz", max_bytes=2**20)


def test_truncated_npz_is_not_called_pickled(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((50, 8, 8), np.uint8), y=np.arange(50) % 2)
    data = (tmp_path / "d.npz").read_bytes()
    for cut in (len(data) // 2, len(data) - 30):
        (tmp_path / "t.npz").write_bytes(data[:cut])
        with pytest.raises(DatasetError) as err:
            load_dataset(tmp_path / "t.npz")
        assert "pickled" not in str(err.value) and "t.npz" in str(err.value)
    npz_with_header(tmp_path / "m.npz", {"x": ("|u1", (50, 8, 8), b"\0" * 100), "y": ("<i8", (50,), b"\0" * 400)})
    with pytest.raises(DatasetError, match="truncated or damaged: array 'x'") as err:   # was "pickled code"
        load_dataset(tmp_path / "m.npz")
    assert "pickled" not in str(err.value)
    npz_with_header(tmp_path / "o.npz", {"x": ("|O", (2,), b""), "y": ("<i8", (2,), b"\0" * 16)})
    with pytest.raises(DatasetError, match="pickled code"):
        load_dataset(tmp_path / "o.npz")


def write_idx(path: Path, dtype: int, dims: tuple[int, ...], data: bytes) -> None:
    raw = b"\0\0" + bytes([dtype, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + data
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_dimensions_are_checked_before_reading(tmp_path, suffix):
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", 0x08, (60000, 50000, 50000), b"\0" * 100)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", 0x08, (60000,), b"\0" * 60000)
    with pytest.raises(DatasetError, match="truncated|over the memory budget"):
        load_dataset(tmp_path)
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", 0x08, (2, 2), b"\0" * 4)
    with pytest.raises(DatasetError, match="2-dimensional.*expected images with 3 or 4"):
        load_dataset(tmp_path)


def test_idx_over_the_budget_names_the_numbers(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", 0x08, (2000, 28, 28), b"\0" * 2000 * 784)
    write_idx(tmp_path / "train-labels-idx1-ubyte", 0x08, (2000,), bytes(np.arange(2000) % 2))
    with pytest.raises(DatasetError, match=r"takes 1\.5 MiB, over the memory budget of 1\.0 MiB"):
        load_dataset(tmp_path, max_bytes=2**20)
    assert load_dataset(tmp_path).classes == ["0", "1"]


def test_huge_png_is_skipped_from_its_header(tmp_path):
    root = folder(tmp_path / "d", {"a": 3, "b": 3})
    side = int(MAX_IMAGE_PIXELS ** 0.5) + 1
    Image.new("L", (side, side)).save(root / "a" / "huge.png", optimize=True)
    assert (root / "a" / "huge.png").stat().st_size < 200_000
    ds = load_dataset(root)
    skipped = [p for p in ds.report.problems if p.severity == "error"]
    assert len(skipped) == 1 and "huge.png" in skipped[0].path and "over the limit" in skipped[0].message
    assert ds.describe()["skipped"] == [{"path": skipped[0].path, "reason": skipped[0].message}]


def test_image_folder_over_the_budget_is_refused_while_reading(tmp_path):
    root = folder(tmp_path / "d", {"a": 30, "b": 30})
    with pytest.raises(DatasetError, match="over the memory budget of 1,000 bytes"):
        load_dataset(root, max_bytes=1000)


# ------------------------------------------------------------------ 4. names
def test_class_folders_fit_255_bytes_and_stay_unique():
    long = "𝔘" * 64                                   # 64 characters, 256 bytes: the old cut failed on export
    folders = class_folders([long, long + "x", "A", "a", "é", "e\u0301", ""])
    assert all(len(f.encode()) <= 255 for f in folders)
    keys = [f.casefold() for f in folders]
    assert len(set(keys)) == len(keys) and folders[2:4] == ["A", "a_2"] and folders[5] == "é_2"


def test_export_with_long_unicode_names_keeps_the_originals(tmp_path):
    result = make_result()
    result.classes = ["𝔘" * 64, "𝔘" * 64 + "!", "\x1b[31mred", "x"]
    out = export_distilled(result, tmp_path / "e")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["classes"] == result.classes
    assert all(len(name.encode()) <= 255 for name in manifest["class_folders"].values())
    assert load_distilled(out).classes == result.classes


def test_repeated_class_names_are_made_unique_for_distillation_and_evaluation(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((12, 4, 4), np.uint8), y=np.arange(12) % 3,
             classes=np.array(["cat", "cat", ""]))
    ds = load_dataset(tmp_path / "d.npz")
    assert ds.classes == ["cat", "cat (2)", "class 2"]
    assert any("got a suffix" in p.message for p in ds.report.problems)
    assert ds.select_classes(["cat (2)", "cat"]).classes == ["cat (2)", "cat"]


def test_inspect_escapes_control_characters(tmp_path, capsys):
    root = folder(tmp_path / "d", {"\x1b[2J\x1b[31mevil\nline": 3, "b\x07": 3})
    assert main(["inspect", "--data", str(root)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b[2J" in out and "\\x0aline" in out
    assert printable("a\u202eb\x00") == "a\\u202eb\\x00"


# ------------------------------------------------------------------ 5. nothing skipped silently
def test_distill_prints_problems_and_the_manifest_lists_skipped_files(tmp_path, capsys):
    root = folder(tmp_path / "d", {"a": 6, "b": 6})
    for i in range(7):
        (root / "a" / f"bad{i}.png").write_bytes(b"not a png")
    assert main(["distill", "--data", str(root), "--out", str(tmp_path / "o"), "--steps", "1",
                 "--kernel", "linear", "--loss", "squared"]) == 0
    err = capsys.readouterr().err
    assert "dataset: 7 problems (7 files skipped)" in err and "bad0.png" in err and "… 2 more" in err
    skipped = json.loads((tmp_path / "o" / "manifest.json").read_text())["dataset"]["skipped"]
    assert sorted(Path(s["path"]).name for s in skipped) == [f"bad{i}.png" for i in range(7)]
    assert all("cannot read" in s["reason"] for s in skipped)


def test_split_without_test_images_is_refused_before_the_teacher(tmp_path, capsys):
    root = folder(tmp_path / "d", {f"c{i}": 2 for i in range(12)})
    ds = load_dataset(root)
    assert sum(ds.report.test_counts) == 0 and any("no test images" in p.message for p in ds.report.problems)
    assert main(["distill", "--data", str(root), "--out", str(tmp_path / "o"), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "12 classes have no test images" in err and "at least 3 images for a 20% hold-out" in err
    assert "raise holdout_fraction" in err                     # 2 images a class: a larger hold-out would split them
    assert "teacher" not in err
    assert main(["distill", "--data", str(root), "--out", str(tmp_path / "o"), "--steps", "1",
                 "--holdout-fraction", "0.5", "--kernel", "linear", "--loss", "squared"]) == 0


def test_class_folders_named_like_dataset_files_are_an_image_folder(tmp_path):
    root = folder(tmp_path / "d", {"x.npz": 3, "train-images-idx3-ubyte": 3, "data_batch_1": 3})
    assert load_dataset(root).classes == ["data_batch_1", "train-images-idx3-ubyte", "x.npz"]


def test_repeated_class_names_distil_and_evaluate_alike(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 256, (60, 6, 6), dtype=np.uint8), y=np.arange(60) % 3,
             classes=np.array(["cat", "cat", "dog"]))
    assert main(["distill", "--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "o"), "--steps", "1",
                 "--kernel", "linear", "--loss", "squared"]) == 0
    assert load_distilled(tmp_path / "o").classes == ["cat", "cat (2)", "dog"]
    capsys.readouterr()
    assert main(["transfer", "--distilled", str(tmp_path / "o"), "--data", str(tmp_path / "d.npz"),
                 "--networks", "mlp", "--seeds", "1", "--epochs", "1", "--device", "cpu"]) == 0
    assert "mlp" in load_distilled(tmp_path / "o").manifest["transfer"]
