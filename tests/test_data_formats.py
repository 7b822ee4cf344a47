"""Every dataset format the loader recognises, on tiny synthetic data written here."""
from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.data import DatasetError, load_dataset, sample_dataset


def rng_images(n: int, h: int = 6, w: int = 6, c: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def write_class_folder(root: Path, classes: dict[str, np.ndarray], ext: str = ".png") -> None:
    """root/<class>/<k>.png for uint8 (n, H, W, C) per class."""
    for name, images in classes.items():
        (root / name).mkdir(parents=True)
        for k, a in enumerate(images):
            Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(root / name / f"{k}{ext}")


def write_idx(path: Path, a: np.ndarray) -> None:
    data = struct.pack(">BBBB", 0, 0, 0x08, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) \
        + a.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


# ---------------------------------------------------------------- image folders
def test_a_small_hold_out_is_named_with_its_digits(tmp_path):
    """A 0.1 % hold-out is shown as such (it read "held out 0%"), in the report and in the refusal of
    classes it leaves without test images."""
    from engine.data.dataset import check_test_split
    from engine.data.report import DatasetError
    from engine.text import percent
    assert [percent(f) for f in (0.2, 0.001, 0.125, 1 / 3, 0.9995, 0.99999, 1e-7, 1.0)] == [
        "20%", "0.1%", "12.5%", "33.3%", "99.95%", "99.999%", "0.00001%", "100%"]
    write_class_folder(tmp_path, {"cat": rng_images(10, seed=1), "dog": rng_images(10, seed=2)})
    ds = load_dataset(tmp_path, holdout_fraction=0.001, seed=0)
    assert ds.report.test_source == "held out 0.1% (seed 0)"
    with pytest.raises(DatasetError, match=r"holding out 0\.1% of a class of 10 images leaves none"):
        check_test_split(ds, 0.001)


def test_image_folder_holds_out_a_stratified_test_split(tmp_path):
    cats, dogs = rng_images(10, seed=1), rng_images(10, seed=2)
    write_class_folder(tmp_path, {"dog": dogs, "cat": cats})
    ds = load_dataset(tmp_path, holdout_fraction=0.2, seed=3)
    assert ds.report.format == "image-folder" and ds.name == tmp_path.name
    assert ds.classes == ["cat", "dog"]                       # sorted, as ImageFolder does
    assert ds.report.train_counts == [8, 8] and ds.report.test_counts == [2, 2]
    assert ds.report.test_source == "held out 20% (seed 3)"
    assert ds.report.image_shape == (6, 6, 1) and ds.report.modes == {"L": 20}
    assert ds.report.problems == []
    rows = np.concatenate([ds.x_train, ds.x_test])[np.r_[ds.y_train, ds.y_test] == 0]
    assert sorted(map(bytes, rows)) == sorted(map(bytes, cats))


@pytest.mark.parametrize("test_name", ["test", "val"])
def test_image_folder_train_test_split(tmp_path, test_name):
    write_class_folder(tmp_path / "train", {"a": rng_images(3, c=3), "b": rng_images(4, c=3, seed=1)})
    write_class_folder(tmp_path / test_name,
                       {"a": rng_images(2, c=3, seed=2), "b": rng_images(1, c=3)})
    ds = load_dataset(tmp_path)
    assert ds.report.test_source == "test split"
    assert ds.report.train_counts == [3, 4] and ds.report.test_counts == [2, 1]
    assert ds.x_train.shape == (7, 6, 6, 3) and ds.x_test.dtype == np.uint8
    np.testing.assert_array_equal(ds.x_test[:2], rng_images(2, c=3, seed=2))


def test_image_folder_reads_every_supported_file_type(tmp_path):
    img = rng_images(1, 8, 8, 3)[0]
    for cls in ("x", "y"):
        (tmp_path / cls).mkdir()
        for ext in (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"):
            Image.fromarray(img).save(tmp_path / cls / f"im{ext}")
    ds = load_dataset(tmp_path, holdout_fraction=0.25)
    assert sum(ds.report.train_counts) + sum(ds.report.test_counts) == 16
    assert [p for p in ds.report.problems if p.severity == "error"] == []
    assert ds.report.image_shape == (8, 8, 3)


def test_progress_callback_reaches_total(tmp_path):
    write_class_folder(tmp_path, {"a": rng_images(3), "b": rng_images(3)})
    calls = []
    load_dataset(tmp_path, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (6, 6) and all(d <= t for d, t in calls)


# ---------------------------------------------------------------- IDX
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_files_raw_and_gzip(tmp_path, suffix):
    x_tr, y_tr = rng_images(12, 5, 4)[..., 0], np.arange(12) % 3
    x_te, y_te = rng_images(6, 5, 4, seed=1)[..., 0], np.arange(6) % 3
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", x_tr)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", y_tr)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", x_te)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", y_te)
    ds = load_dataset(tmp_path / f"train-images-idx3-ubyte{suffix}")   # a file stands for its folder
    assert ds.report.format == "idx" and ds.classes == ["0", "1", "2"]
    np.testing.assert_array_equal(ds.x_train[..., 0], x_tr)
    np.testing.assert_array_equal(ds.y_train, y_tr)
    np.testing.assert_array_equal(ds.x_test[..., 0], x_te)
    assert ds.y_test.dtype == np.int64 and ds.report.test_source == "test split"


def test_truncated_idx_names_the_file(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", rng_images(4)[..., 0])
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(4) % 2)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DatasetError, match="truncated") as err:
        load_dataset(tmp_path)
    assert err.value.path == str(path) and "re-download" in str(err.value)


# ---------------------------------------------------------------- CIFAR python
def _cifar_batch(path: Path, x: np.ndarray, y: np.ndarray, labels_key: bytes = b"labels") -> None:
    data = x.transpose(0, 3, 1, 2).reshape(len(x), -1)      # rows of R, G, B planes
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"x", labels_key: [int(v) for v in y], b"data": data}, f,
                    protocol=2)


def test_cifar10_python_batches(tmp_path):
    parts = [(rng_images(6, 4, 4, 3, seed=s), np.arange(6) % 3) for s in range(3)]
    for i, (x, y) in enumerate(parts[:2], 1):
        _cifar_batch(tmp_path / f"data_batch_{i}", x, y)
    _cifar_batch(tmp_path / "test_batch", *parts[2])
    with open(tmp_path / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"plane", b"car", b"bird"]}, f, protocol=2)
    ds = load_dataset(tmp_path)
    assert ds.report.format == "cifar-python" and ds.classes == ["plane", "car", "bird"]
    np.testing.assert_array_equal(ds.x_train, np.concatenate([parts[0][0], parts[1][0]]))
    np.testing.assert_array_equal(ds.x_test, parts[2][0])
    assert ds.report.test_counts == [2, 2, 2]


def test_cifar100_python_files(tmp_path):
    x, y = rng_images(8, 4, 4, 3), np.arange(8) % 4
    _cifar_batch(tmp_path / "train", x, y, b"fine_labels")
    with open(tmp_path / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [b"a", b"b", b"c", b"d"]}, f, protocol=4)
    ds = load_dataset(tmp_path, holdout_fraction=0.25)
    assert ds.name == "cifar100" and ds.classes == ["a", "b", "c", "d"]
    assert ds.report.test_source.startswith("held out 25%")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/dgkip-pwned",))


def test_cifar_pickle_with_code_is_refused(tmp_path):
    marker = Path("/tmp/dgkip-pwned")
    marker.unlink(missing_ok=True)
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump({b"data": _Evil(), b"labels": [0]}, f, protocol=2)
    with pytest.raises(DatasetError, match="refused to load posix.system") as err:
        load_dataset(tmp_path)
    assert "data_batch_1" in str(err.value) and not marker.exists()


# ---------------------------------------------------------------- npz
@pytest.mark.parametrize("keys", [("x", "y"), ("images", "labels")])
def test_single_npz_file(tmp_path, keys):
    x, y = rng_images(20, 5, 5, 3), np.arange(20) % 2
    np.savez(tmp_path / "toy.npz", **{keys[0]: x, keys[1]: y})
    ds = load_dataset(tmp_path / "toy.npz")
    assert ds.report.format == "npz" and ds.name == "toy" and ds.classes == ["0", "1"]
    assert sum(ds.report.train_counts) == 16 and ds.report.test_source == "held out 20% (seed 0)"


def test_npz_folder_concatenates_parts_in_name_order(tmp_path):
    classes = np.array(["zero", "one"])
    parts = {name: (rng_images(3, seed=i)[..., 0], np.array([0, 1, i % 2]))
             for i, name in enumerate(["train-1", "train-2", "train-10", "test"])}
    for name, (x, y) in parts.items():
        np.savez(tmp_path / f"{name}.npz", x=x, y=y, classes=classes)
    ds = load_dataset(tmp_path)
    order = ["train-1", "train-2", "train-10"]
    np.testing.assert_array_equal(ds.x_train[..., 0], np.concatenate([parts[n][0] for n in order]))
    np.testing.assert_array_equal(ds.y_train, np.concatenate([parts[n][1] for n in order]))
    np.testing.assert_array_equal(ds.x_test[..., 0], parts["test"][0])
    assert ds.classes == ["zero", "one"]


def _two_datasets(folder: Path) -> None:
    for prefix, seed in (("mnist", 0), ("fashion-mnist", 1)):
        for split, n in (("train", 10), ("test", 4)):
            np.savez(folder / f"{prefix}-{split}.npz", x=rng_images(n, seed=seed)[..., 0],
                     y=np.arange(n) % 2, classes=np.array([f"{prefix}0", f"{prefix}1"]))


def test_single_npz_picks_up_its_test_sibling(tmp_path):
    _two_datasets(tmp_path)
    ds = load_dataset(tmp_path / "mnist-train.npz")
    assert ds.name == "mnist" and ds.classes == ["mnist0", "mnist1"]
    assert ds.report.test_source == "test split" and ds.report.test_counts == [2, 2]


def test_folder_with_several_npz_datasets_asks_for_one_file(tmp_path):
    _two_datasets(tmp_path)
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path)
    msg = str(err.value)
    assert "several datasets (fashion-mnist, mnist)" in msg and "pass one file" in msg
    assert "-train.npz" in msg


# ---------------------------------------------------------------- test splits
def test_explicit_test_path_maps_classes_by_name(tmp_path):
    write_class_folder(tmp_path / "tr", {"a": rng_images(4), "b": rng_images(4), "c": rng_images(4)})
    write_class_folder(tmp_path / "te", {"b": rng_images(2, seed=5), "c": rng_images(1)})
    ds = load_dataset(tmp_path / "tr", test_path=tmp_path / "te")
    assert ds.report.test_source == f"explicit: {tmp_path / 'te'}"
    assert ds.report.train_counts == [4, 4, 4] and ds.report.test_counts == [0, 2, 1]
    np.testing.assert_array_equal(ds.x_test[ds.y_test == 1], rng_images(2, seed=5))

    write_class_folder(tmp_path / "bad", {"a": rng_images(1), "zebra": rng_images(1)})
    with pytest.raises(DatasetError, match="zebra"):
        load_dataset(tmp_path / "tr", test_path=tmp_path / "bad")


def test_holdout_is_stratified_and_seeded(tmp_path):
    y = np.repeat([0, 1, 2], [50, 20, 10])
    np.savez(tmp_path / "d.npz", x=rng_images(80)[..., 0], y=y)
    a = load_dataset(tmp_path / "d.npz", holdout_fraction=0.3, seed=7)
    b = load_dataset(tmp_path / "d.npz", holdout_fraction=0.3, seed=7)
    c = load_dataset(tmp_path / "d.npz", holdout_fraction=0.3, seed=8)
    assert a.report.test_counts == [15, 6, 3] and a.report.train_counts == [35, 14, 7]
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    np.testing.assert_array_equal(a.x_test, b.x_test)


def test_resize_to_applies_to_array_formats(tmp_path):
    np.savez(tmp_path / "d.npz", x=rng_images(10, 6, 6, 3), y=np.arange(10) % 2)
    ds = load_dataset(tmp_path / "d.npz", resize_to=(12, 9))
    assert ds.x_train.shape[1:] == (12, 9, 3) and ds.x_test.shape[1:] == (12, 9, 3)


# ---------------------------------------------------------------- sample and dataset operations
def test_sample_dataset_is_sklearn_digits_scaled():
    from sklearn.datasets import load_digits

    digits = load_digits()
    ds = load_dataset("sample", seed=1)
    assert ds.report.format == "sample" and ds.name == "digits (sample)"
    assert ds.classes == [str(i) for i in range(10)] and ds.report.image_shape == (8, 8, 1)
    assert len(ds.x_train) + len(ds.x_test) == 1797 and ds.report.modes == {"L": 1797}
    expected = np.round(digits.images * 255 / 16).astype(np.uint8)
    everything = np.concatenate([ds.x_train, ds.x_test])[..., 0]
    assert sorted(map(bytes, everything)) == sorted(map(bytes, expected))
    assert sample_dataset(seed=1).fingerprint() == ds.fingerprint()
    assert all(abs(te - 0.2 * (tr + te)) <= 1
               for tr, te in zip(ds.report.train_counts, ds.report.test_counts))


def test_select_classes_and_cap_per_class():
    ds = sample_dataset()
    sub = ds.select_classes(["7", "3"])
    assert sub.classes == ["7", "3"] and set(sub.y_train) == {0, 1}
    assert sub.report.train_counts == [ds.report.train_counts[7], ds.report.train_counts[3]]
    np.testing.assert_array_equal(sub.x_train[sub.y_train == 0], ds.x_train[ds.y_train == 7])
    with pytest.raises(DatasetError, match="has no class 'eleven'"):
        ds.select_classes(["1", "eleven"])
    capped = ds.cap_per_class(5, seed=0)
    assert capped.report.train_counts == [5] * 10 and len(capped.x_test) == len(ds.x_test)
    assert capped.fingerprint() == ds.cap_per_class(5, seed=0).fingerprint()
    assert capped.fingerprint() != ds.cap_per_class(5, seed=1).fingerprint()


def test_describe_is_json_ready():
    import json

    desc = sample_dataset().describe()
    assert json.loads(json.dumps(desc))["fingerprint"] == sample_dataset().fingerprint()


# ---------------------------------------------------------------- the real shared datasets
@pytest.mark.datasets
def test_real_datasets_folder(datasets_dir):
    mnist = load_dataset(datasets_dir / "mnist-train.npz")
    assert (len(mnist.x_train), len(mnist.x_test)) == (60000, 10000)
    assert mnist.report.test_source == "test split" and mnist.report.image_shape == (28, 28, 1)
    cifar = load_dataset(datasets_dir / "cifar10-train-1.npz")
    assert (len(cifar.x_train), len(cifar.x_test)) == (50000, 10000)
    assert cifar.classes[0] == "airplane" and cifar.report.image_shape == (32, 32, 3)
    with pytest.raises(DatasetError, match="several datasets"):
        load_dataset(datasets_dir)


def test_split_folder_oddities_are_reported(tmp_path):
    write_class_folder(tmp_path / "Train", {"a": rng_images(2), "b": rng_images(2)})
    write_class_folder(tmp_path / "test", {"a": rng_images(1), "zebra": rng_images(3)})
    write_class_folder(tmp_path / "val", {"a": rng_images(1)})
    ds = load_dataset(tmp_path)
    assert ds.report.train_counts == [2, 2] and ds.report.test_counts == [1, 0]
    messages = {p.path: p.message for p in ds.report.problems}
    assert messages[str(tmp_path / "val")] == "ignored because test/ is used as the test split"
    assert messages[str(tmp_path / "test" / "zebra")] == \
        "no training class 'zebra'; its 3 test files were ignored"


def test_16_bit_grayscale_images_are_scaled(tmp_path):
    for cls, value in (("dark", 257 * 10), ("bright", 65535)):     # → 10 and 255
        (tmp_path / cls).mkdir()
        for k in range(2):
            Image.fromarray(np.full((4, 4), value, np.uint16)).save(tmp_path / cls / f"{k}.png")
    ds = load_dataset(tmp_path, holdout_fraction=0.5)
    assert ds.report.image_shape == (4, 4, 1)
    assert set(np.unique(ds.x_train)) == {10, 255}
