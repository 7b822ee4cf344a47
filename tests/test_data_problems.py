"""Bad input gets a clear message naming the file and the fix — never a crash."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.data import DatasetError, Problem, check_ipc, load_dataset


def png_bytes(h: int = 6, w: int = 6, mode: str = "L", seed: int = 0) -> bytes:
    c = 1 if mode == "L" else 3
    a = np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a[..., 0] if c == 1 else a).save(buf, format="PNG")
    return buf.getvalue()


def make_folder(root: Path, counts: dict[str, int], **png) -> Path:
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            (root / name / f"{k}.png").write_bytes(png_bytes(seed=k, **png))
    return root


def problem(ds, text: str) -> Problem:
    found = [p for p in ds.report.problems if text in p.message]
    assert found, f"no problem mentioning {text!r} in {ds.report.problems}"
    return found[0]


def test_truncated_and_empty_images_are_skipped_and_listed(tmp_path):
    make_folder(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "a" / "cut.png").write_bytes(png_bytes(32, 32)[:60])
    (tmp_path / "b" / "zero.png").write_bytes(b"")
    ds = load_dataset(tmp_path)
    cut, zero = problem(ds, "cannot read this image"), problem(ds, "empty file (0 bytes)")
    assert cut.path == str(tmp_path / "a" / "cut.png") and cut.severity == "error"
    assert "re-save" in cut.fix and "delete" in zero.fix
    assert zero.path == str(tmp_path / "b" / "zero.png") and zero.severity == "error"
    assert sum(ds.report.train_counts) + sum(ds.report.test_counts) == 6
    assert "cut.png" in ds.report.summary() and "2 skipped files" in ds.report.summary()


def test_non_image_files_are_ignored(tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "a" / "notes.txt").write_text("hello")
    (tmp_path / "README.md").write_text("top-level files are not classes")
    (tmp_path / "b" / ".DS_Store").write_bytes(b"\0\1")
    ds = load_dataset(tmp_path)
    p = problem(ds, "1 non-image files were ignored (e.g. a/notes.txt)")
    assert p.severity == "warning"
    assert [q for q in ds.report.problems if q.severity == "error"] == []


def test_folder_without_class_subfolders(tmp_path):
    (tmp_path / "x.png").write_bytes(png_bytes())
    with pytest.raises(DatasetError, match="holds 1 images but no class subfolders") as err:
        load_dataset(tmp_path)
    assert err.value.path == str(tmp_path) and "own subfolder" in err.value.fix
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="is not a dataset") as err:
        load_dataset(empty)
    assert "'sample'" in str(err.value)


def test_missing_path(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope")


def test_one_class_only(tmp_path):
    make_folder(tmp_path, {"only": 4})
    with pytest.raises(DatasetError, match=r"has only one class \('only'\)") as err:
        load_dataset(tmp_path)
    assert "at least two classes" in str(err.value)


def test_empty_class_folder_is_left_out(tmp_path):
    make_folder(tmp_path, {"a": 3, "b": 3, "c": 0})
    ds = load_dataset(tmp_path)
    assert ds.classes == ["a", "b"]
    assert "without training images left out: c" in problem(ds, "left out").message


def test_fewer_images_than_ipc(tmp_path):
    make_folder(tmp_path, {"a": 10, "b": 3})
    ds = load_dataset(tmp_path, holdout_fraction=0.2)
    assert check_ipc(ds, 2) == []
    (p,) = check_ipc(ds, 5)
    assert p.message == "class 'b' has 2 training images, fewer than the 5 images per class requested"
    assert "lower images per class to 2" in p.fix and p.path == str(tmp_path)


def test_mixed_sizes_are_resized_to_the_most_common(tmp_path):
    make_folder(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "b" / "big.png").write_bytes(png_bytes(12, 10))
    ds = load_dataset(tmp_path)
    assert ds.report.image_shape == (6, 6, 1)
    msg = problem(ds, "resized").message
    assert "1 were resized to the most common, 6×6" in msg and "b/big.png is 12×10" in msg
    assert load_dataset(tmp_path, resize_to=(4, 5)).report.image_shape == (4, 5, 1)


def test_mixed_grayscale_and_colour_are_converted(tmp_path):
    make_folder(tmp_path, {"a": 3, "b": 2}, mode="RGB")
    (tmp_path / "b" / "gray.png").write_bytes(png_bytes(mode="L", seed=9))
    ds = load_dataset(tmp_path, holdout_fraction=0.2)
    assert ds.report.image_shape == (6, 6, 3) and ds.report.modes == {"RGB": 5, "L": 1}
    assert problem(ds, "grayscale").message == \
        "1 grayscale images were converted to RGB to match the others (e.g. b/gray.png)"
    gray = np.asarray(Image.open(tmp_path / "b" / "gray.png"))
    rows = np.concatenate([ds.x_train, ds.x_test])
    assert any((r == gray[..., None]).all() for r in rows)      # replicated into R, G, B


def test_symlink_loops_end(tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 2})
    os.symlink(tmp_path, tmp_path / "a" / "up")            # a/up → the dataset root again
    os.symlink(tmp_path / "a" / "self", tmp_path / "a" / "self")
    ds = load_dataset(tmp_path)
    assert ds.classes == ["a", "b"]
    assert sum(ds.report.train_counts) + sum(ds.report.test_counts) == 4
    loops = [p for p in ds.report.problems if "symbolic link loop" in p.message]
    assert {Path(p.path).name for p in loops} == {"up", "self"}


def test_unicode_and_non_utf8_names(tmp_path):
    make_folder(tmp_path, {"café": 2, "猫": 2})
    raw = os.fsencode(tmp_path) + b"/caf\xe9"                  # Latin-1 name, not valid UTF-8
    os.mkdir(raw)
    for k in range(2):
        with open(raw + b"/\xff%d.png" % k, "wb") as f:
            f.write(png_bytes(seed=k))
    with open(raw + b"/bad\xfe.png", "wb") as f:
        f.write(b"not a png")
    ds = load_dataset(tmp_path, holdout_fraction=0.25)
    assert ds.classes == ["café", "caf\\xe9", "猫"]     # sorted by the raw names
    assert sum(ds.report.train_counts) + sum(ds.report.test_counts) == 6
    bad = problem(ds, "cannot read this image")
    assert bad.path.endswith("caf\\xe9/bad\\xfe.png")
    json.dumps([p.__dict__ for p in ds.report.problems], ensure_ascii=False).encode("utf-8")
    ds.report.summary().encode("utf-8")


def test_read_only_folder_is_readable(tmp_path):
    root = make_folder(tmp_path / "ro", {"a": 2, "b": 2})
    folders = [root, root / "a", root / "b"]
    try:
        for p in root.rglob("*.png"):
            p.chmod(0o444)
        for d in folders:
            d.chmod(0o555)
        ds = load_dataset(root, holdout_fraction=0.5)
        assert sum(ds.report.train_counts) == 2 and ds.report.problems == []
    finally:
        for d in folders:
            d.chmod(0o755)


def test_huge_dataset_warning_offers_a_cap(tmp_path):
    make_folder(tmp_path, {"a": 10, "b": 10})
    ds = load_dataset(tmp_path, memory_limit=1000)      # 16 × 6·6·1 × 4 bytes = 2,304 > 1,000
    assert ds.report.memory_bytes == 16 * 36 * 4
    warning = problem(ds, "Large dataset")
    assert "about 2.2 KiB as float32 (more than 1,000 bytes)" in warning.message
    assert "max_per_class" in warning.fix
    assert "e.g. 3 images per class" in warning.fix
    capped = ds.cap_per_class(3, seed=0)
    assert capped.report.memory_bytes == 6 * 36 * 4
    assert not any("Large dataset" in p.message for p in capped.report.problems)


def test_bad_npz_files_name_the_file(tmp_path):
    (tmp_path / "zip.npz").write_bytes(b"PK not really")
    with pytest.raises(DatasetError, match="not a readable .npz") as err:
        load_dataset(tmp_path / "zip.npz")
    assert err.value.path == str(tmp_path / "zip.npz")
    np.savez(tmp_path / "obj.npz", x=np.array([None, 1], dtype=object), y=np.zeros(2))
    with pytest.raises(DatasetError, match="pickled code"):
        load_dataset(tmp_path / "obj.npz")
    np.savez(tmp_path / "keys.npz", pixels=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DatasetError, match=r"has arrays \(pixels\); expected 'x' and 'y'"):
        load_dataset(tmp_path / "keys.npz")
    np.savez(tmp_path / "range.npz", x=np.full((2, 4, 4), 300.0), y=np.array([0, 1]))
    with pytest.raises(DatasetError, match="pixel values span 300..300"):
        load_dataset(tmp_path / "range.npz")
    x = np.full((2, 4, 4), 0.5)
    x[0, 1, 1] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=np.array([0, 1]))
    with pytest.raises(DatasetError, match=r"1 pixel value is not finite \(NaN or ±inf\)"):
        load_dataset(tmp_path / "nan.npz")


def test_a_test_split_of_another_size_is_a_warning_to_check_not_a_note(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "train.npz", x=rng.integers(0, 256, (20, 8, 8), dtype=np.uint8), y=np.arange(20) % 2)
    np.savez(tmp_path / "other.npz", x=rng.integers(0, 256, (6, 12, 12, 3), dtype=np.uint8), y=np.arange(6) % 2)
    ds = load_dataset(tmp_path / "train.npz", test_path=tmp_path / "other.npz")
    (problem,) = [p for p in ds.report.problems if "were converted to the training images" in p.message]
    assert problem.severity == "warning" and "check that it is the test split of the same dataset" in problem.fix


def test_float_and_channel_first_arrays_are_converted_with_a_note(tmp_path):
    x = np.random.default_rng(0).random((6, 3, 5, 5)).astype(np.float32)
    np.savez(tmp_path / "f.npz", x=x, y=np.arange(6) % 2)
    ds = load_dataset(tmp_path / "f.npz", holdout_fraction=0.34)
    assert ds.report.image_shape == (5, 5, 3)
    messages = " | ".join(p.message for p in ds.report.problems)
    assert "channel-first" in messages and "scaled from 0..1" in messages


def test_blank_images_are_counted_and_named_by_class(tmp_path):
    """Flat images (one value in every pixel and channel) load with a warning that counts them per
    split and names a class; an all-blank dataset says a run on it means nothing; a flat image that
    is not constant across channels is not blank."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 6, 6, 3), dtype=np.uint8)
    x[[3, 9]] = 0                                 # two black images, class 1
    x[11] = (200, 10, 10)                         # one flat red image: has content across channels
    x[20] = 255                                   # white, class 0
    np.savez(tmp_path / "d.npz", x=x[:30], y=np.arange(30) % 2)
    np.savez(tmp_path / "d_test.npz", x=x[30:], y=np.arange(10) % 2)
    ds = load_dataset(tmp_path / "d.npz", test_path=tmp_path / "d_test.npz")
    found = problem(ds, "blank")
    assert found.severity == "warning" and found.path.endswith("d.npz")
    assert found.message.startswith("3 of the 30 training images are blank (e.g. one of class '1', every pixel 0)")
    assert "remove them" in found.fix
    assert [p for p in ds.report.problems if "blank" in p.message] == [found]      # the test split has none
    np.savez(tmp_path / "zero.npz", x=np.zeros((12, 4, 4), np.uint8), y=np.arange(12) % 3)
    ds = load_dataset(tmp_path / "zero.npz", holdout_fraction=0.25)
    train, test = [p.message for p in ds.report.problems if "blank" in p.message]
    assert train.startswith("all 9 of the 9 training images are blank") and "test images" in test
    assert "means nothing" in ds.report.problems[0].fix
    assert "blank" in ds.report.summary()
