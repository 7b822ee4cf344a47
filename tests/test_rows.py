"""Reading a training set by row number (engine.data.rows): the rows a sharded run reads are exactly the
rows, in the same order, that the whole dataset loaded in one process has."""
from __future__ import annotations

import numpy as np
import pytest

from engine.data import load_dataset
from engine.data.preprocess import Preprocessor
from engine.data.rows import CHUNK_BYTES, NotShardable, decode, encode


def _save(folder, name, x, y, compressed):
    (np.savez_compressed if compressed else np.savez)(folder / name, x=x, y=y, classes=np.array(list("abcd")))


@pytest.fixture
def parts(tmp_path):
    """A dataset in two training parts (one stored, one compressed) and a test part."""
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (700, 6, 5, 3), dtype=np.uint8), rng.integers(0, 4, 700)
    _save(tmp_path, "toy-train-1.npz", x[:300], y[:300], False)
    _save(tmp_path, "toy-train-2.npz", x[300:600], y[300:600], True)
    _save(tmp_path, "toy-test.npz", x[600:], y[600:], True)
    _save(tmp_path, "holdout.npz", x[:, :, :, :1].reshape(700, 6, 5), y, True)     # (N, H, W) grayscale
    return tmp_path


@pytest.mark.parametrize("name", ["toy-train-1.npz", "holdout.npz"])
def test_row_codes_follow_split_selection_and_cap(parts, name):
    whole, coded = load_dataset(parts / name, seed=3), load_dataset(parts / name, seed=3, by_row=True)
    assert coded.rows is not None and coded.x_train.shape[1:] == (1, 8, 1)
    assert coded.report.image_shape == whole.report.image_shape
    assert coded.report.memory_bytes == whole.report.memory_bytes and coded.report.test_source == whole.report.test_source
    for a, b in [(whole, coded), (whole.select_classes(["c", "a", "d"]).cap_per_class(40, 1),
                                  coded.select_classes(["c", "a", "d"]).cap_per_class(40, 1))]:
        assert np.array_equal(a.y_train, b.y_train) and np.array_equal(a.y_test, b.y_test)
        assert np.array_equal(a.x_train, b.rows.read(decode(b.x_train)))
        assert np.array_equal(a.x_test, b.rows.read(decode(b.x_test)))
        pick = np.array([7, 2, 2, len(a.y_train) - 1, 0])           # any order, repeats
        assert np.array_equal(a.x_train[pick], b.rows.read(decode(b.x_train)[pick]))


def test_many_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr("engine.data.rows.CHUNK_BYTES", 1000)       # many chunks per member
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 256, (400, 10, 10, 1), dtype=np.uint8), rng.integers(0, 3, 400)
    _save(tmp_path, "d.npz", x, y, True)
    coded = load_dataset(tmp_path / "d.npz", by_row=True)
    codes = decode(coded.x_train)
    assert np.array_equal(coded.rows.read(codes[::-1]), load_dataset(tmp_path / "d.npz").x_train[::-1])
    assert CHUNK_BYTES > 1000


def test_codes_round_trip():
    rows = np.array([0, 5, 2**40])
    assert np.array_equal(decode(encode(rows)), rows)
    assert np.array_equal(decode(encode(rows, test=True)) & ~(1 << 62), rows)


def test_what_cannot_be_read_by_row_says_so(tmp_path, parts):
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "f.npz", x=rng.random((50, 4, 4)), y=rng.integers(0, 2, 50))
    for source, kwargs in [(tmp_path / "f.npz", {}), ("sample", {}), (parts / "toy-train-1.npz", {"resize_to": (3, 3)})]:
        with pytest.raises(NotShardable):
            load_dataset(source, by_row=True, **kwargs)
    with pytest.raises(NotShardable):
        load_dataset(parts / "holdout.npz", test_path=parts / "toy-test.npz", by_row=True)


def test_sharded_standardisation_sums_to_the_whole(parts):
    """Preprocessor.fit on one shard, with ``reduce`` adding the other shard's statistics (what the
    all-reduce does), equals the fit on all rows."""
    x = load_dataset(parts / "holdout.npz").x_train
    first, second = x[:123], x[123:]
    seen = []
    Preprocessor.fit(second, reduce=lambda a: seen.append(a) or a)
    got = Preprocessor.fit(first, reduce=lambda a: a + seen[0])
    whole = Preprocessor.fit(x)
    assert np.allclose(got.mean, whole.mean, rtol=1e-13) and np.allclose(got.std, whole.std, rtol=1e-12)
