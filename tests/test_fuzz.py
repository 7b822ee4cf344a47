"""Issue 14, item 7: property-based fuzzing (hypothesis) of everything a user's file can hold.

Targets: config JSON, export manifests, ``.npz`` headers, IDX headers and image-folder trees. The
property is always the same: the engine either accepts the input or refuses it with its own error
(:class:`ConfigError` / :class:`DatasetError`) whose message is one printable line; anything else
(a ``TypeError``, ``MemoryError``, ``RecursionError``, …) is a crash and fails the test.

Counts (cases generated, accepted, refused, crashes) are written to
``tests/_artifacts/fuzz-counts.json``. ``DGKIP_FUZZ_COLLECT=1`` records crashes there instead of
failing at the first (to count what a version of the code gets wrong); ``DGKIP_FUZZ_RANDOM=1``
explores new cases instead of the fixed, derandomised ones CI runs, ``DGKIP_FUZZ_SCALE=k`` runs k
times as many.
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import struct
import tempfile
import traceback
import unicodedata
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from engine.config import ConfigError, DistillConfig
from engine.data import DatasetError, load_dataset
from engine.export import class_folders, export_distilled, load_distilled
from test_export import make_result

ARTIFACTS = Path(__file__).resolve().parent / "_artifacts"
COLLECT = os.environ.get("DGKIP_FUZZ_COLLECT") == "1"
BUDGET = 2**24                      # bytes a fuzzed dataset may decode to (16 MiB)
COUNTS: Counter = Counter()
CRASHES: dict[str, str] = {}


def fuzz_settings(n: int):
    return settings(max_examples=n * int(os.environ.get("DGKIP_FUZZ_SCALE", "1")), deadline=None, database=None,
                    derandomize=os.environ.get("DGKIP_FUZZ_RANDOM") != "1",
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


@pytest.fixture(scope="module", autouse=True)
def write_counts():
    yield
    ARTIFACTS.mkdir(exist_ok=True)
    targets = sorted({t for t, _ in COUNTS})
    table = {t: {k: COUNTS[(t, k)] for k in ("cases", "accepted", "refused", "crash")} for t in targets}
    (ARTIFACTS / "fuzz-counts.json").write_text(json.dumps({"counts": table, "crashes": CRASHES}, indent=2))


def outcome(target: str, call, refusals=(ConfigError, DatasetError)):
    """Run ``call()``; count it as accepted, refused (an expected error with a printable one-line
    message) or a crash (anything else, or a message with control characters: re-raised unless
    collecting)."""
    COUNTS[(target, "cases")] += 1
    try:
        value = call()
    except refusals as exc:
        text = str(exc)
        if text and "\n" not in text and not any(unicodedata.category(c) == "Cc" for c in text):
            COUNTS[(target, "refused")] += 1
            return None
        return _crash(target, AssertionError(f"message not one printable line: {text!r}"), "message")
    except Exception as exc:            # noqa: BLE001 - a crash is what the fuzzer looks for
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        return _crash(target, exc, f"{Path(frame.filename).name}:{frame.lineno}")
    COUNTS[(target, "accepted")] += 1
    return value


def _crash(target: str, exc: Exception, where: str) -> None:
    COUNTS[(target, "crash")] += 1
    CRASHES.setdefault(f"{target}: {type(exc).__name__} at {where}", str(exc)[:200])
    if not COLLECT:
        raise exc


# ------------------------------------------------------------------ JSON values
scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
           | st.text(max_size=12) | st.sampled_from(["", "0.2", "abc", "sample", "exact", "\x1b[31m", "a\0b"]))
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                           max_leaves=8)
deep = st.integers(1, 30_000).map(lambda d: "[" * d + "]" * d)
DEFAULTS = DistillConfig()
FIELDS = [f.name for f in dataclasses.fields(DistillConfig)]
PLAUSIBLE = {
    "classes": st.lists(st.text(max_size=5) | st.integers(0, 9), max_size=4),
    "kernel_params": st.dictionaries(st.sampled_from(["depth", "width", "bandwidth", "bias", "seed", "x", "w_std"]),
                                     scalars, max_size=3),
    "kernel": st.sampled_from(["linear", "rbf", "ntk-fc", "rf-conv", "nope"]),
    "holdout_fraction": st.floats(-1, 2), "memory_budget_gb": st.floats(0, 1e309),
}


def field_values(name: str):
    return st.one_of(st.just(getattr(DEFAULTS, name)), PLAUSIBLE.get(name, st.nothing()), json_values)


config_dicts = st.fixed_dictionaries({}, optional={name: field_values(name) for name in FIELDS}) \
    | st.dictionaries(st.text(max_size=8), json_values, max_size=3)


@fuzz_settings(400)
@given(st.one_of(config_dicts.map(json.dumps), json_values.map(json.dumps), deep, st.text(max_size=40)))
def test_fuzz_config_json(text):
    def accept():
        cfg = DistillConfig.from_json(text).validate()
        assert DistillConfig.from_json(cfg.to_json()) == cfg, "an accepted config must round-trip unchanged"
    outcome("config JSON", accept)


# ------------------------------------------------------------------ manifests
@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    return export_distilled(make_result(method="standardize"), tmp_path_factory.mktemp("fuzz") / "e")


def mutate(manifest: dict, path: list[str], value) -> dict:
    out = json.loads(json.dumps(manifest))
    node = out
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    if value is _DELETE:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return out


_DELETE = object()
manifest_paths = st.sampled_from(["schema_version", "classes", "class_folders", "n_images", "metrics", "dataset",
                                  "transfer", "config", "image_shape"]).map(lambda k: [k]) \
    | st.sampled_from(FIELDS).map(lambda k: ["config", k])


@fuzz_settings(150)
@given(st.lists(st.tuples(manifest_paths, json_values | st.just(_DELETE)), min_size=1, max_size=3),
       st.booleans(), deep)
def test_fuzz_manifest(export_dir, changes, raw, nested):
    manifest_file = export_dir / "manifest.json"
    original = manifest_file.read_text()
    manifest = json.loads(original)
    for path, value in changes:
        manifest = mutate(manifest, path, value)
    try:
        manifest_file.write_text(nested if raw else json.dumps(manifest))
        def accept():
            loaded = load_distilled(export_dir)
            assert loaded.labels.max() < len(loaded.classes) and loaded.config.validate()
        outcome("manifest", accept)
    finally:
        manifest_file.write_text(original)


# ------------------------------------------------------------------ .npz headers
DESCRS = ["|u1", "<i8", ">i4", "<f4", "<f8", "|b1", "|O", "<U5", "|S3", "<c16", "|V4", "<M8[s]", "<u8", "bogus", "<f2"]
shapes = st.lists(st.integers(0, 6) | st.integers(-3, 2**45), max_size=5).map(tuple)
members = st.fixed_dictionaries({
    "descr": st.sampled_from(DESCRS), "shape": shapes, "fortran": st.booleans(),
    "exact": st.booleans(), "extra": st.integers(-64, 64), "mangle": st.booleans(), "seed": st.integers(0, 9)})


def npy_bytes(m: dict) -> bytes:
    """A .npy member whose header says what ``m`` says, with data of the promised length (``exact``,
    random values) or of any length, the header optionally mangled."""
    try:
        itemsize = np.dtype(m["descr"]).itemsize
    except TypeError:
        itemsize = 1
    promised = int(np.prod(m["shape"], dtype=object)) * itemsize if m["shape"] else itemsize
    length = max(0, (promised if m["exact"] and 0 <= promised < 10**6 else 64) + m["extra"])
    data = np.random.default_rng(m["seed"]).integers(0, 3, length, dtype=np.uint8).tobytes()
    header = repr({"descr": m["descr"], "fortran_order": m["fortran"], "shape": m["shape"]}).encode()
    if m["mangle"]:
        header = header[: len(header) // 2] + b"(" + header[len(header) // 2:]
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


@st.composite
def coherent_npz(draw) -> dict:
    """x (n, h, w[, c]) and y (n,) (optionally classes) whose data match their headers: the cases
    that get past the header checks, with random label values and pixel types."""
    n, h, w = draw(st.integers(1, 8)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    shape = draw(st.sampled_from([(n, h, w), (n, h, w, 1), (n, h, w, 3), (n, 3, h, w), (n, h, w, 2)]))
    base = dict(fortran=False, exact=True, extra=0, mangle=False, seed=draw(st.integers(0, 9)))
    arrays = {"x": {**base, "descr": draw(st.sampled_from(["|u1", "<f4", "|b1", "<i8", "<f8"])), "shape": shape},
              "y": {**base, "descr": draw(st.sampled_from(["|u1", "<i8", "<u8", ">i4", "<f4"])), "shape": (n,)}}
    if draw(st.booleans()):
        arrays["classes"] = {**base, "descr": draw(st.sampled_from(["<U3", "|S2", "<i8"])),
                             "shape": (draw(st.integers(0, 4)),)}
    return arrays


@fuzz_settings(300)
@given(st.dictionaries(st.sampled_from(["x", "y", "images", "labels", "classes", "junk"]), members, min_size=1,
                       max_size=4) | coherent_npz(), st.booleans(), st.integers(0, 100), st.booleans())
def test_fuzz_npz_headers(arrays, compress, cut_percent, cut):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as zf:
        for name, m in arrays.items():
            zf.writestr(f"{name}.npy", npy_bytes(m))
    data = buf.getvalue()
    if cut:
        data = data[: len(data) * cut_percent // 100]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.npz"
        path.write_bytes(data)
        def accept():
            ds = load_dataset(path, max_bytes=BUDGET)
            assert ds.x_train.dtype == np.uint8 and 0 <= ds.y_train.min() and ds.y_train.max() < len(ds.classes)
        outcome(".npz headers", accept)


# ------------------------------------------------------------------ IDX headers
idx_files = st.fixed_dictionaries({
    "magic": st.sampled_from([b"\0\0", b"\0\1", b"PK"]), "code": st.sampled_from([8, 9, 0x0B, 0x0C, 0x0D, 0x0E, 0x42]),
    "dims": st.lists(st.integers(0, 5) | st.integers(0, 2**32 - 1), max_size=5),
    "exact": st.booleans(), "extra": st.integers(-16, 16), "seed": st.integers(0, 9)})
IDX_SIZES = {8: 1, 9: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


def idx_bytes(f: dict) -> bytes:
    promised = int(np.prod(f["dims"], dtype=object)) * IDX_SIZES.get(f["code"], 1)
    length = max(0, (promised if f["exact"] and promised < 10**6 else 32) + f["extra"])
    data = np.random.default_rng(f["seed"]).integers(0, 4, length, dtype=np.uint8).tobytes()
    return f["magic"] + bytes([f["code"], len(f["dims"])]) + struct.pack(f">{len(f['dims'])}I", *f["dims"]) + data


@st.composite
def coherent_idx(draw) -> tuple[dict, dict]:
    """An images file (n, h, w) and a labels file (n,) whose data match their headers."""
    n, h, w = draw(st.integers(1, 8)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    base = dict(magic=b"\0\0", exact=True, extra=0, seed=draw(st.integers(0, 9)))
    return ({**base, "code": draw(st.sampled_from([8, 9, 0x0D, 0x0E])), "dims": [n, h, w]},
            {**base, "code": draw(st.sampled_from([8, 0x0C, 0x0D])), "dims": [n]})


@fuzz_settings(300)
@given(st.tuples(idx_files, idx_files) | coherent_idx(), st.booleans(), st.booleans())
def test_fuzz_idx_headers(pair, gz, with_test):
    images, labels = pair
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        suffix = ".gz" if gz else ""
        pack = (lambda b: gzip.compress(b, 1)) if gz else (lambda b: b)
        (folder / f"train-images-idx3-ubyte{suffix}").write_bytes(pack(idx_bytes(images)))
        (folder / f"train-labels-idx1-ubyte{suffix}").write_bytes(pack(idx_bytes(labels)))
        if with_test:
            (folder / f"t10k-images-idx3-ubyte{suffix}").write_bytes(pack(idx_bytes(images))[:-3])
            (folder / f"t10k-labels-idx1-ubyte{suffix}").write_bytes(pack(idx_bytes(labels)))
        def accept():
            ds = load_dataset(folder, max_bytes=BUDGET)
            assert ds.x_train.dtype == np.uint8 and 0 <= ds.y_train.min() and ds.y_train.max() < len(ds.classes)
        outcome("IDX headers", accept)


# ------------------------------------------------------------------ folder trees
def png_header_only(w: int, h: int) -> bytes:
    """A PNG signature and IHDR claiming w×h pixels, and nothing else (a decompression-bomb header)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def image_file(kind: str, size: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    if kind == "garbage":
        return rng.integers(0, 256, 40, dtype=np.uint8).tobytes()
    if kind == "empty":
        return b""
    if kind == "bomb":
        return png_header_only(100_000, 100_000)
    mode = {"png-l": "L", "png-rgb": "RGB", "png-rgba": "RGBA", "png-16": "I;16", "jpeg": "RGB", "png-cut": "L"}[kind]
    a = rng.integers(0, 256, (size, size, 3) if mode in ("RGB", "RGBA") else (size, size), dtype=np.uint8)
    img = Image.fromarray(a).convert(mode) if mode != "I;16" else Image.fromarray(a.astype(np.uint16) * 200)
    buf = io.BytesIO()
    img.save(buf, "JPEG" if kind == "jpeg" else "PNG")
    data = buf.getvalue()
    return data[: len(data) // 2] if kind == "png-cut" else data


name_chars = st.characters(codec="utf-8", exclude_characters="/\0")
FORMAT_NAMES = ["x.npz", "digits-train.npz", "train", "test", "val", "data_batch_1", "meta", "batches.meta",
                "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte.gz", ".hidden", "CON", "a" * 255, "é" * 127]
class_names = st.sampled_from(FORMAT_NAMES) | st.text(name_chars, min_size=1, max_size=30).filter(
    lambda n: n not in (".", "..") and len(n.encode()) <= 255)
files = st.lists(st.tuples(st.sampled_from(["png-l", "png-rgb", "png-rgba", "png-16", "jpeg", "png-cut", "garbage",
                                            "empty", "bomb"]), st.integers(1, 9), st.integers(0, 9),
                           st.sampled_from([".png", ".jpg", ".txt", ".PNG", ".gif"])), max_size=4)


@fuzz_settings(60)
@given(st.dictionaries(class_names, files, min_size=1, max_size=4), st.booleans())
def test_fuzz_folder_trees(tree, split):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        for name, entries in tree.items():
            folder = root / ("train" if split else "") / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, (kind, size, seed, ext) in enumerate(entries):
                (folder / f"{i}{ext}").write_bytes(image_file(kind, size, seed))
            if split and entries:
                (root / "test" / name).mkdir(parents=True, exist_ok=True)
                (root / "test" / name / f"t{ext}").write_bytes(image_file(*entries[0][:3]))
        def accept():
            ds = load_dataset(root, max_bytes=2**22)
            summary = ds.report.summary()
            assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in summary.replace("\n", "")), summary
            out = Path(tmp) / "folders"
            for folder in class_folders(ds.classes):     # every class gets a folder the file system takes
                (out / folder).mkdir(parents=True)
        outcome("folder trees", accept)


@fuzz_settings(300)
@given(st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=300), min_size=1, max_size=6))
def test_fuzz_class_folders(names):
    def accept():
        folders = class_folders(names)
        assert all(0 < len(f.encode()) <= 255 for f in folders), folders
        keys = [unicodedata.normalize("NFD", f).casefold() for f in folders]
        assert len(set(keys)) == len(keys), folders
        with tempfile.TemporaryDirectory() as tmp:
            for f in folders:
                (Path(tmp) / f).mkdir()
    outcome("class folder names", accept)
