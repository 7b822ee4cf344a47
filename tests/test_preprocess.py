"""Preprocessing: per-channel standardisation and regularised ZCA, checked against direct numpy
formulas and the defining properties (whitened covariance, exact inverse)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine.data import DatasetError
from engine.data.preprocess import Preprocessor


def pixels(n: int = 400, h: int = 3, w: int = 2, c: int = 2, seed: int = 0) -> np.ndarray:
    """Correlated uint8 images: a smooth random field plus noise, so ZCA has work to do."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 1, 1, c)) * 40 + rng.normal(size=(n, h, w, c)) * 20 + 120
    return np.clip(np.rint(base), 0, 255).astype(np.uint8)


def test_standardize_matches_per_channel_moments():
    x = pixels()
    pre = Preprocessor.fit(x)
    p = x.astype(np.float64) / 255
    np.testing.assert_allclose(pre.mean, p.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(pre.std, p.std(axis=(0, 1, 2)), rtol=1e-9)
    z = pre.transform(x)
    assert z.dtype == np.float32 and z.shape == x.shape and pre.zca is None
    np.testing.assert_allclose(z.mean(axis=(0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 1, 2)), 1, atol=1e-5)


def test_constant_channel_is_only_centred():
    x = np.zeros((5, 2, 2, 1), np.uint8)
    z = Preprocessor.fit(x).transform(x)
    assert np.isfinite(z).all() and (z == 0).all()


def test_zca_whitens_and_follows_the_kip_convention():
    x = pixels()
    reg = 0.1
    pre = Preprocessor.fit(x, "zca", zca_reg=reg)
    z = ((x / 255 - pre.mean) / pre.std).reshape(len(x), -1)
    cov = z.T @ z / len(x)
    s, u = np.linalg.eigh(cov)
    # W Σ W = U diag(s / (s + reg·mean(s))) Uᵀ for W = U diag(1/sqrt(s + reg·mean(s))) Uᵀ
    white = pre.transform(x).reshape(len(x), -1).astype(np.float64)
    np.testing.assert_allclose(white.T @ white / len(x), (u * (s / (s + reg * s.mean()))) @ u.T,
                               atol=1e-4)
    np.testing.assert_allclose(pre.zca @ pre.zca_inverse, np.eye(len(s)), atol=1e-10)
    tiny = Preprocessor.fit(x, "zca", zca_reg=1e-8).transform(x).reshape(len(x), -1)
    np.testing.assert_allclose(tiny.T.astype(np.float64) @ tiny / len(x), np.eye(len(s)), atol=1e-3)


@pytest.mark.parametrize("method", ["standardize", "zca"])
def test_inverse_reproduces_pixels(method):
    x = pixels(h=4, w=4, c=3)
    pre = Preprocessor.fit(x, method)
    back = pre.inverse(pre.transform(x))
    assert back.dtype == np.float32 and back.min() >= 0 and back.max() <= 1
    assert np.abs(back - x / 255).max() <= 1 / 255
    assert np.abs(pre.to_uint8(pre.transform(x)).astype(int) - x).max() <= 1


def test_inverse_clips_out_of_range_features():
    pre = Preprocessor.fit(pixels())
    out = pre.inverse(np.full((1, 3, 2, 2), 1e3, np.float32))
    assert (out == 1).all()


def test_save_load_round_trip_and_summary(tmp_path):
    x = pixels()
    for method in ("standardize", "zca"):
        pre = Preprocessor.fit(x, method, zca_reg=0.05)
        pre.save(tmp_path / "p.npz")
        back = Preprocessor.load(tmp_path / "p.npz")
        assert back.method == method and back.shape == (3, 2, 2)
        np.testing.assert_array_equal(back.transform(x), pre.transform(x))
        summary = json.loads(json.dumps(back.to_dict()))
        assert summary["method"] == method and summary["shape"] == [3, 2, 2]
        assert summary["zca_reg"] == (0.05 if method == "zca" else None)


def test_bad_input_and_damaged_file(tmp_path):
    with pytest.raises(ValueError, match="expected uint8"):
        Preprocessor.fit(np.zeros((2, 2, 2, 1)))
    with pytest.raises(ValueError, match="not one of"):
        Preprocessor.fit(pixels(), "pca")
    with pytest.raises(ValueError, match="do not match"):
        Preprocessor.fit(pixels(), "zca").transform(pixels(h=2))
    (tmp_path / "p.npz").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="p.npz: is missing or damaged"):
        Preprocessor.load(tmp_path / "p.npz")
