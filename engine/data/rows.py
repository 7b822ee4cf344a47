"""Reading a training set by row number, for runs whose ranks each hold a shard (engine.cluster).

A rank must not hold the whole image tensor, yet its rows must be exactly the rows one process would
use, in the same order, after the test split, the class selection and the per-class cap. Both
follow from the ordinary pipeline (:func:`engine.data.build.build_dataset`,
:func:`engine.distill.prepare_dataset`) run on *row codes* instead of pixels: every image is replaced
by an 8-byte stand-in (1 × 8 × 1 uint8) holding its row number in its source file(s), so whatever the
pipeline selects or reorders, the codes follow. :class:`NpzRows` then decompresses each ``.npz``
member once per read, in a stream, keeping only the requested rows.

Only ``.npz`` sources whose image arrays are uint8 and channels-last ((N, H, W) or (N, H, W, C)) are
read this way (what ``np.savez(x=images, …)`` of ordinary images gives); any other source raises
:class:`NotShardable` and the caller reads it whole.
"""
from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.data.report import DatasetError

CODE_SHAPE = (1, 8, 1)          # the stand-in "image" that carries a row code
TEST_FLAG = 1 << 62             # codes of rows in the source's test files carry this bit
CHUNK_BYTES = 16 * 2**20        # bytes decompressed at a time while streaming a member


class NotShardable(Exception):
    """This source cannot be read by row number; read it whole (the message says why)."""


def encode(rows: np.ndarray, test: bool = False) -> np.ndarray:
    """Row numbers (n,) → stand-in images (n, 1, 8, 1) uint8."""
    codes = np.asarray(rows, dtype="<i8") | (TEST_FLAG if test else 0)
    return codes.view(np.uint8).reshape(len(codes), *CODE_SHAPE)


def decode(x: np.ndarray) -> np.ndarray:
    """Stand-in images (n, 1, 8, 1) → codes (n,) int64 (test rows keep :data:`TEST_FLAG`)."""
    return np.ascontiguousarray(x).reshape(len(x), 8).view("<i8").reshape(len(x))


@dataclass(frozen=True)
class _Member:
    """One part's image array: ``path``, member name, shape (N, H, W, C) and where its data starts."""
    path: Path
    member: str
    shape: tuple[int, int, int, int]
    data_offset: int

    @property
    def row_bytes(self) -> int:
        return math.prod(self.shape[1:])


def image_member(path: Path, member: str) -> _Member:
    """The image array ``member`` of ``path`` if it can be read by row (uint8, C order, (N, H, W[, C]),
    C ∈ {1, 3}), else :class:`NotShardable`."""
    with zipfile.ZipFile(path) as zf, zf.open(member + ".npy") as f:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            raise NotShardable(f"{path.name}: .npy format {version}")
        shape, fortran, dtype = read(f)
        offset = f.tell()
    if dtype != np.uint8 or fortran:
        raise NotShardable(f"{path.name}: '{member}' is {dtype}{' (Fortran order)' if fortran else ''}, not uint8 "
                           "rows")
    if len(shape) == 3:
        shape = (*shape, 1)
    if len(shape) != 4 or shape[-1] not in (1, 3):
        raise NotShardable(f"{path.name}: '{member}' has shape {tuple(shape)}, not (N, H, W[, C]) channels-last")
    return _Member(path, member, tuple(int(s) for s in shape), offset)


class NpzRows:
    """Rows of a dataset stored as ``.npz`` parts: ``train`` and ``test`` lists of :class:`_Member`
    whose rows are numbered consecutively in list order (the order the reader concatenates them)."""

    def __init__(self, train: list[_Member], test: list[_Member]):
        self.parts = {False: train, True: test}
        self.image_shape = train[0].shape[1:]

    def paths(self) -> list[Path]:
        """The source files, train parts then test parts."""
        return [m.path for m in self.parts[False] + self.parts[True]]

    def read(self, codes: np.ndarray) -> np.ndarray:
        """uint8 images (len(codes), H, W, C) of the rows ``codes`` (:func:`decode`), in that order; each
        member holding a requested row is decompressed once, in :data:`CHUNK_BYTES` pieces."""
        codes = np.asarray(codes, dtype=np.int64)
        out = np.empty((len(codes), *self.image_shape), np.uint8)
        for test in (False, True):
            mine = np.flatnonzero(((codes & TEST_FLAG) != 0) == test)
            if not len(mine):
                continue
            rows = codes[mine] & ~TEST_FLAG
            start = 0
            for part in self.parts[test]:
                n = part.shape[0]
                inside = np.flatnonzero((rows >= start) & (rows < start + n))
                if len(inside):
                    out[mine[inside]] = self._read_part(part, rows[inside] - start)
                start += n
            if len(rows) and rows.max() >= start:
                raise IndexError(f"row {int(rows.max())} is beyond the {start:,} rows of the dataset")
        return out

    @staticmethod
    def _read_part(part: _Member, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (any order, repeats allowed) of one member, streamed."""
        order = np.argsort(rows, kind="stable")
        wanted = rows[order]
        got = np.empty((len(rows), *part.shape[1:]), np.uint8)
        per_chunk = max(1, CHUNK_BYTES // part.row_bytes)
        try:
            with zipfile.ZipFile(part.path) as zf, zf.open(part.member + ".npy") as f:
                f.read(part.data_offset)
                i = 0
                for first in range(0, part.shape[0], per_chunk):
                    if i >= len(wanted):
                        break
                    last = min(part.shape[0], first + per_chunk)
                    if wanted[i] >= last:                     # nothing wanted here: skip (still decompressed)
                        f.read((last - first) * part.row_bytes)
                        continue
                    block = np.frombuffer(f.read((last - first) * part.row_bytes), np.uint8)
                    block = block.reshape(-1, *part.shape[1:])
                    j = i + int(np.searchsorted(wanted[i:], last))
                    got[order[i:j]] = block[wanted[i:j] - first]
                    i = j
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise DatasetError(f"could not be read again by row ({exc})", part.path,
                               "check that the file did not change during the run") from exc
        return got
