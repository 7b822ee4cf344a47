"""Export of a distilled set: round trip, ImageFolder compatibility, atomicity, no code on load."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import engine
from engine import export
from engine.config import DistillConfig
from engine.data import DatasetError
from engine.data.preprocess import Preprocessor
from engine.export import export_distilled, load_distilled, update_manifest
from engine.result import DistillResult

CLASSES = ["cat", "a/b: c?", "CON", "café"]


def make_result(channels: int = 3, method: str = "zca", ipc: int = 2) -> DistillResult:
    rng = np.random.default_rng(0)
    k, m = len(CLASSES), len(CLASSES) * ipc
    real = rng.integers(0, 256, (50, 4, 4, channels), dtype=np.uint8)
    pre = Preprocessor.fit(real, method)
    labels = np.repeat(np.arange(k), ipc)
    return DistillResult(
        config=DistillConfig(seed=3, ipc=ipc), classes=CLASSES,
        images=pre.transform(real[:m]), labels=labels,
        targets=np.eye(k, dtype=np.float32)[labels], alpha=rng.normal(size=(m, k)),
        preprocess=pre, metrics={"test_accuracy": np.float32(0.75), "gap": 1e-3},
        curves=[{"step": 0, "gap": 2.0, "radius": 1.0}, {"step": 10, "gap": 1.0, "acc_test": 0.5}],
        dataset={"name": "toy", "fingerprint": "ab" * 32}, timings={"distill": 1.5}, device="cpu")


def leftovers(folder) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith("."))


def test_round_trip_gives_identical_tensors(tmp_path):
    result = make_result()
    out = export_distilled(result, tmp_path / "export")
    assert out == tmp_path / "export" and leftovers(tmp_path) == []
    loaded = load_distilled(out)
    np.testing.assert_array_equal(loaded.images, result.images)
    np.testing.assert_array_equal(loaded.labels, result.labels)
    np.testing.assert_array_equal(loaded.targets, result.targets)
    np.testing.assert_array_equal(loaded.alpha, result.alpha)
    np.testing.assert_array_equal(loaded.pixels, result.pixels())
    assert loaded.images.dtype == np.float32 and loaded.alpha.dtype == np.float64
    assert loaded.classes == CLASSES and loaded.config == result.config
    np.testing.assert_array_equal(loaded.preprocess.zca, result.preprocess.zca)

    pt = torch.load(out / "distilled.pt", weights_only=True)
    for key in ("images", "labels", "pixels", "targets", "alpha"):
        np.testing.assert_array_equal(pt[key].numpy(), getattr(loaded, key))
    assert pt["classes"] == CLASSES and DistillConfig.from_json(pt["config"]) == result.config


def test_manifest_and_curves(tmp_path):
    out = export_distilled(make_result(), tmp_path / "e")
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert m["schema_version"] == 1 and m["config"] == DistillConfig(seed=3, ipc=2).to_dict()
    assert m["versions"]["engine"] == engine.__version__
    assert set(m["versions"]) >= {"python", "torch", "numpy"}
    assert m["seed"] == 3 and m["device"] == "cpu" and m["timings"] == {"distill": 1.5}
    assert m["metrics"]["test_accuracy"] == 0.75 and m["dataset"]["name"] == "toy"
    assert m["preprocessing"]["method"] == "zca" and m["image_shape"] == [4, 4, 3]
    assert m["class_folders"] == {"cat": "cat", "a/b: c?": "a_b_ c_", "CON": "_CON", "café": "café"}
    with open(out / "curves.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "gap", "fenchel_young", "kernel_match", "radius", "acc_test"]
    assert rows[0]["radius"] == "1.0" and rows[0]["acc_test"] == "" and rows[1]["acc_test"] == "0.5"


@pytest.mark.parametrize("channels", [1, 3])
def test_images_folder_loads_with_torchvision_imagefolder(tmp_path, channels):
    from torchvision.datasets import ImageFolder

    result = make_result(channels, "standardize")
    out = export_distilled(result, tmp_path / "e")
    folders = load_distilled(out).manifest["class_folders"]
    index_of = {folder: CLASSES.index(name) for name, folder in folders.items()}
    ds = ImageFolder(str(out / "images"))
    assert len(ds) == len(result.labels)
    pixels = result.pixels()
    for path, target in ds.samples:
        i = int(os.path.basename(path).removesuffix(".png"))
        assert index_of[ds.classes[target]] == result.labels[i]
        a = np.asarray(Image.open(path))
        np.testing.assert_array_equal(a.reshape(pixels[i].shape), pixels[i])
    grid = Image.open(out / "grid.png")
    cell = 64                                            # 4-px images upscaled ×16
    assert grid.size == (2 + 2 * (cell + 2), 2 + len(CLASSES) * (cell + 2))


def test_existing_target_is_never_overwritten_silently(tmp_path):
    first, second = make_result(method="standardize"), make_result(method="zca")
    out = export_distilled(first, tmp_path / "e")
    with pytest.raises(FileExistsError, match="already exists"):
        export_distilled(second, out)
    assert load_distilled(out).preprocess.method == "standardize"
    export_distilled(second, out, overwrite=True)
    assert load_distilled(out).preprocess.method == "zca" and leftovers(tmp_path) == []

    user = tmp_path / "my-photos"
    user.mkdir()
    (user / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not a distilled-set export"):
        export_distilled(first, user, overwrite=True)
    assert os.listdir(user) == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    assert load_distilled(export_distilled(first, tmp_path / "empty")).classes == CLASSES


def test_failure_midway_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken_save(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export.torch, "save", broken_save)
    with pytest.raises(OSError, match="No space"):
        export_distilled(make_result(), tmp_path / "e")
    assert os.listdir(tmp_path) == []

    monkeypatch.undo()
    out = export_distilled(make_result(method="standardize"), tmp_path / "e")
    monkeypatch.setattr(export.torch, "save", broken_save)
    with pytest.raises(OSError):
        export_distilled(make_result(), out, overwrite=True)
    assert os.listdir(tmp_path) == ["e"] and load_distilled(out).preprocess.method == "standardize"


def test_update_manifest(tmp_path):
    out = export_distilled(make_result(), tmp_path / "e")
    update_manifest(out, "transfer", {"resnet": 0.5})
    assert load_distilled(out).manifest["transfer"] == {"resnet": 0.5}
    assert leftovers(out) == []
    with pytest.raises(TypeError):
        update_manifest(out, "bad", object())
    assert load_distilled(out).manifest["transfer"] == {"resnet": 0.5} and leftovers(out) == []


@pytest.mark.parametrize("damage, name", [
    (lambda out: (out / "distilled.npz").unlink(), "distilled.npz"),
    (lambda out: (out / "distilled.npz").write_bytes(b"junk"), "distilled.npz"),
    (lambda out: (out / "manifest.json").write_text("{ not json"), "manifest.json"),
    (lambda out: (out / "manifest.json").unlink(), "manifest.json"),
    (lambda out: (out / "preprocess.npz").unlink(), "preprocess.npz"),
])
def test_missing_or_corrupt_files_are_named(tmp_path, damage, name):
    out = export_distilled(make_result(), tmp_path / "e")
    damage(out)
    with pytest.raises(DatasetError) as err:
        load_distilled(out)
    assert err.value.path == str(out / name)


def test_load_never_unpickles(tmp_path):
    out = export_distilled(make_result(), tmp_path / "e")
    with np.load(out / "distilled.npz") as f:
        arrays = dict(f)
    arrays["alpha"] = np.array([object()] * len(arrays["alpha"]), dtype=object)
    np.savez(out / "distilled.npz", **arrays)
    with pytest.raises(DatasetError, match="distilled.npz: array .alpha. holds Python objects .*pickled code"):
        load_distilled(out)
