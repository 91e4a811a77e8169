"""Region feature store: object-detector outputs, memory-mapped, one directory per store.

A store is a directory of ``.npy`` arrays concatenated over all images, read with
``mmap_mode="r"`` so a 100 GB store costs no RAM until a region is touched::

    features.npy   (N_regions, D)  float16 (default) or float32   pooled region features
    boxes.npy      (N_regions, 4)  float32                        x1 y1 x2 y2 in pixels
    cls_probs.npy  (N_regions, C)  same dtype as features         detector class distribution
    index.npy      (N_images,)     structured int64 (image_id, offset, count, width, height),
                                   sorted by image_id; offsets point into the region arrays
    meta.json      format_version, feature_dim, num_classes, dtype, n_images, n_regions,
                   class_names, source, info, and the sha256 of every array file

``C`` is the detector's class count (1601 for BUTD's ``cls_prob`` with background, 1600 for
distributions rebuilt from argmax class + confidence). ``C`` may be 0 when the source carries
no class information at all (the original 6-column BUTD TSV); such a store serves MRFR but
not MRC / MRC-KL.

Readers turn the formats users already have into :class:`Regions`: the bottom-up-attention
TSV (:func:`read_butd_tsv`) and per-image ``.npz`` files (:func:`read_npz_dir`, which never
lets numpy unpickle: ``info`` goes through :mod:`vlp.safe_pickle`);
:func:`build_store` writes any iterable of :class:`Regions`. A bad source is one
:class:`~vlp.errors.VlpError` line naming the file (and line or key); boxes outside their
image are one data warning per source.

Writing refuses an existing non-empty store directory unless ``overwrite=True``, and an
output that is, holds or lies inside the source (:func:`claim_store`). Opening checks what
costs no reading (``meta.json``'s fields, each ``.npy`` file's size against its header,
shapes, the index); :func:`verify_store` also compares every file's sha256 with
``meta.json``. The same inputs give byte-identical stores.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import csv
import io
import itertools
import json
import math
import operator
import re
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NamedTuple

import numpy as np
from tqdm import tqdm

from vlp.errors import VlpError, data_warning, input_error
from vlp.fileio import atomic_path, claim_output, sha256_file
from vlp.safe_pickle import safe_load

FORMAT_VERSION = 1
ARRAY_FILES = ("features.npy", "boxes.npy", "cls_probs.npy", "index.npy")
INDEX_DTYPE = np.dtype([("image_id", "<i8"), ("offset", "<i8"), ("count", "<i8"),
                        ("width", "<i8"), ("height", "<i8")])
DTYPES = ("float16", "float32")
FLOAT16_MAX = float(np.finfo(np.float16).max)
VG_OBJECT_CLASSES = 1600  # the Visual Genome Faster R-CNN of bottom-up attention
INT64_MAX = int(np.iinfo(np.int64).max)


@dataclass(frozen=True, eq=False)
class Regions:
    """The detected regions of one image.

    Attributes:
        image_id: the image's id.
        width: image width in pixels.
        height: image height in pixels.
        features: (n, D) float32 pooled region features.
        boxes: (n, 4) float32 boxes, x1 y1 x2 y2 in pixels.
        cls_probs: (n, C) float32 detector class distribution per region (C may be 0).
    """

    image_id: int
    width: int
    height: int
    features: np.ndarray
    boxes: np.ndarray
    cls_probs: np.ndarray

    def __len__(self) -> int:
        return int(self.features.shape[0])


# --------------------------------------------------------------------------- writing


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


class _NpyStream:
    """An ``.npy`` file written row block by row block, its header fixed at the end.

    The header is written for zero rows first; numpy pads headers so the row count can
    grow in place, so the final header normally has the same length and is rewritten in
    place. If it does not (an older numpy), the data is copied behind the new header.
    """

    def __init__(self, path: Path, dtype: str, width: int) -> None:
        self.path, self.dtype, self.width, self.rows = path, np.dtype(dtype), width, 0
        self._header = _npy_header(self.dtype, (0, width))
        self._file: IO[bytes] = path.open("wb")
        self._file.write(self._header)

    def write(self, block: np.ndarray) -> None:
        self._file.write(np.ascontiguousarray(block, dtype=self.dtype).tobytes())
        self.rows += block.shape[0]

    def discard(self) -> None:
        """Close without fixing the header (the file is about to be deleted)."""
        self._file.close()

    def close(self) -> None:
        """Write the final header; the file is then a valid ``.npy`` array."""
        if self._file.closed:
            return
        header = _npy_header(self.dtype, (self.rows, self.width))
        if len(header) == len(self._header):
            self._file.seek(0)
            self._file.write(header)
            self._file.close()
            return
        self._file.close()
        data = self.path.with_suffix(".data")
        self.path.rename(data)
        with data.open("rb") as src, self.path.open("wb") as dst:
            src.seek(len(self._header))
            dst.write(header)
            while chunk := src.read(1 << 22):
                dst.write(chunk)
        data.unlink()


class RegionStoreWriter:
    """Writes a region store, one image at a time, atomically.

    Arrays stream to disk as images are added (nothing is held in RAM but the small
    index). The store is built under a temporary name beside ``out_dir`` and renamed
    by :meth:`close`; an exception inside the ``with`` block removes it, so an
    interrupted build never leaves a half store (an existing store at ``out_dir`` is
    replaced only by a complete one).

    Args:
        out_dir: the store directory to create.
        feature_dim: D, the size of a region feature.
        num_classes: C, the size of a class distribution (0: the source has none).
        dtype: ``"float16"`` (default, half the disk) or ``"float32"`` for features and
            class distributions; boxes are always float32.
        class_names: optional names of the C classes.
        source: where the features came from, kept in ``meta.json``.
        info: optional extra JSON-serialisable facts kept in ``meta.json`` (e.g. the
            detector's accuracy).
        overwrite: replace an existing non-empty ``out_dir`` (otherwise it is refused
            before anything is written).

    Raises:
        VlpError: ``out_dir`` exists and is not empty (without ``overwrite``) or is not a
            directory, or the arguments are invalid.

    Example:
        >>> with RegionStoreWriter(out, 2048, 1601) as w:  # doctest: +SKIP
        ...     w.add(42, 640, 480, features, boxes, cls_probs)
    """

    def __init__(self, out_dir: str | Path, feature_dim: int, num_classes: int,
                 dtype: str = "float16", class_names: Sequence[str] | None = None,
                 source: str = "", info: Mapping[str, Any] | None = None,
                 overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir)
        _check_writer_args(self.out_dir, feature_dim, num_classes, dtype, class_names)
        claim_store(self.out_dir, overwrite=overwrite)
        self.feature_dim, self.num_classes, self.dtype = feature_dim, num_classes, dtype
        self._meta_extra = {"class_names": list(class_names) if class_names else None,
                            "source": source, "info": dict(info or {})}
        self._rows: list[tuple[int, int, int, int, int]] = []
        self._seen: set[int] = set()
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(atomic_path(self.out_dir))
        self._tmp.mkdir()
        self._streams = {
            "features.npy": _NpyStream(self._tmp / "features.npy", dtype, feature_dim),
            "boxes.npy": _NpyStream(self._tmp / "boxes.npy", "float32", 4),
            "cls_probs.npy": _NpyStream(self._tmp / "cls_probs.npy", dtype, num_classes),
        }
        self._closed = False

    def __enter__(self) -> RegionStoreWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.close()
        else:
            self.abort(exc)

    @property
    def n_images(self) -> int:
        """Images added so far."""
        return len(self._rows)

    def add(self, image_id: int, width: int, height: int, features: np.ndarray,
            boxes: np.ndarray, cls_probs: np.ndarray) -> None:
        """Append one image's regions.

        Args:
            image_id: the image's id (unique in the store).
            width: image width in pixels.
            height: image height in pixels.
            features: (n, D) region features, n > 0.
            boxes: (n, 4) boxes, x1 y1 x2 y2 in pixels.
            cls_probs: (n, C) non-negative class distributions.

        Raises:
            VlpError: a wrong shape, a non-finite or out-of-range value, or a duplicate
                id, in one line naming the image and the field.
        """
        if self._closed:
            raise VlpError(f"{self.out_dir}: the store writer is already closed")
        image_id = self._check_id(image_id, width, height)
        arrays = _check_regions(f"{self.out_dir}: image {image_id}", features, boxes,
                                cls_probs, self.feature_dim, self.num_classes, self.dtype)
        offset = self._streams["features.npy"].rows
        for name, arr in zip(("features.npy", "boxes.npy", "cls_probs.npy"), arrays,
                             strict=True):
            self._streams[name].write(arr)
        self._rows.append((image_id, offset, arrays[0].shape[0], int(width), int(height)))
        self._seen.add(image_id)

    def _check_id(self, image_id: int, width: int, height: int) -> int:
        try:
            image_id = operator.index(image_id)
        except TypeError:
            raise VlpError(f"{self.out_dir}: image id must be an integer, "
                           f"got {image_id!r}") from None
        if not -INT64_MAX <= image_id <= INT64_MAX:
            raise VlpError(f"{self.out_dir}: image id {image_id} is outside the int64 range")
        if image_id in self._seen:
            raise VlpError(f"{self.out_dir}: image {image_id}: duplicate image id "
                           "(already added to this store)")
        for name, value in (("width", width), ("height", height)):
            if not _positive_int(value):
                raise VlpError(f"{self.out_dir}: image {image_id}: field '{name}': "
                               f"expected a positive integer, got {value!r}")
        return image_id

    def close(self) -> Path:
        """Finalise the arrays, write ``meta.json`` and move the store into place.

        Returns:
            The store directory.
        """
        if self._closed:
            return self.out_dir
        try:
            if not self._rows:
                raise VlpError(f"{self.out_dir}: no images were added; nothing written")
            for stream in self._streams.values():
                stream.close()
            self._write_index_and_meta()
        except BaseException as err:
            self.abort(err)
            raise
        self._closed = True
        self._stack.close()  # renames the finished directory to out_dir
        return self.out_dir

    def abort(self, exc: BaseException | None = None) -> None:
        """Discard everything written; ``out_dir`` is left as it was."""
        if self._closed:
            return
        self._closed = True
        for stream in self._streams.values():
            stream.discard()
        err = exc if exc is not None else VlpError("aborted")
        # Passing the exception makes atomic_path delete the temporary, not rename it.
        with contextlib.suppress(BaseException):
            self._stack.__exit__(type(err), err, err.__traceback__)

    def _write_index_and_meta(self) -> None:
        index = np.array(sorted(self._rows), dtype=INDEX_DTYPE)
        np.save(self._tmp / "index.npy", index)
        meta = {
            "format": "vlp-region-store", "format_version": FORMAT_VERSION,
            "feature_dim": self.feature_dim, "num_classes": self.num_classes,
            "dtype": self.dtype, "n_images": len(index),
            "n_regions": self._streams["features.npy"].rows, **self._meta_extra,
            "sha256": {name: sha256_file(self._tmp / name) for name in ARRAY_FILES},
        }
        (self._tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")


def _positive_int(value: object) -> bool:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return False
    return math.isfinite(number) and number.is_integer() and 1 <= number <= INT64_MAX


def claim_store(out_dir: str | Path, *, overwrite: bool = False,
                inputs: Iterable[str | Path] = ()) -> Path:
    """Check, before any work, that a store may be written at ``out_dir``.

    Args:
        out_dir: the store directory to write.
        overwrite: an existing non-empty ``out_dir`` may be replaced.
        inputs: the files and directories the store is built from; ``out_dir`` may not be,
            hold or lie inside one of them (replacing it would delete the source).

    Raises:
        VlpError: one line naming ``out_dir`` (see :func:`vlp.fileio.claim_output`), or
            ``out_dir`` exists and is not a directory.
    """
    out = Path(out_dir)
    claim_output(out, overwrite=overwrite, inputs=inputs)
    if out.exists() and not out.is_dir():
        raise VlpError(f"{out}: exists and is not a directory; a region store is a "
                       "directory, choose another path")
    return out


def _check_writer_args(out_dir: Path, feature_dim: int, num_classes: int, dtype: str,
                       class_names: Sequence[str] | None) -> None:
    if dtype not in DTYPES:
        raise VlpError(f"{out_dir}: dtype must be one of {DTYPES}, got {dtype!r}")
    if feature_dim < 1 or num_classes < 0:
        raise VlpError(f"{out_dir}: expected feature_dim ≥ 1 and num_classes ≥ 0, "
                       f"got {feature_dim} and {num_classes}")
    if class_names is not None and len(class_names) != num_classes:
        raise VlpError(f"{out_dir}: {len(class_names)} class names for "
                       f"{num_classes} classes")


def _check_regions(where: str, features: np.ndarray, boxes: np.ndarray,
                   cls_probs: np.ndarray, dim: int, n_cls: int,
                   dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate one image's arrays; returns them as float arrays."""
    arrays = []
    n: int | None = None
    for field, arr, cols in (("features", features, dim), ("boxes", boxes, 4),
                             ("cls_probs", cls_probs, n_cls)):
        arr = np.asarray(arr)
        if arr.ndim != 2 or arr.shape[1] != cols or (n is not None and arr.shape[0] != n):
            rows = "n" if n is None else str(n)
            raise VlpError(f"{where}: field '{field}': expected shape ({rows}, {cols}), "
                           f"got {tuple(arr.shape)}")
        if n is None and arr.shape[0] == 0:
            raise VlpError(f"{where}: field '{field}': no regions (expected n > 0 rows)")
        n = arr.shape[0]
        arr = arr.astype(np.float32, copy=False)
        _check_values(where, field, arr, dtype)
        arrays.append(arr)
    return arrays[0], arrays[1], arrays[2]


def _check_values(where: str, field: str, arr: np.ndarray, dtype: str) -> None:
    finite = np.isfinite(arr)
    if not finite.all():
        row = int(np.argwhere(~finite)[0, 0])
        raise VlpError(f"{where}: field '{field}': non-finite value (NaN or inf) in row {row}")
    if field != "boxes" and dtype == "float16" and arr.size and np.abs(arr).max() > FLOAT16_MAX:
        raise VlpError(f"{where}: field '{field}': values beyond the float16 range "
                       f"(±{FLOAT16_MAX:g}); write the store with dtype='float32'")
    if field == "cls_probs" and arr.size and arr.min() < 0:
        raise VlpError(f"{where}: field '{field}': expected probabilities ≥ 0, "
                       f"got {arr.min():g}")


# --------------------------------------------------------------------------- reading


class RegionStore:
    """A read-only, memory-mapped region store; open it with :meth:`open`.

    Lookup is O(1) (a dict from image id to index row); only the requested image's rows
    are read from disk. A store pickles as its path, so DataLoader workers reopen the
    memory maps instead of copying the arrays.

    Attributes:
        root: the store directory.
        meta: the parsed ``meta.json``.
    """

    def __init__(self, root: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.root, self.meta = root, meta
        self._features = arrays["features.npy"]
        self._boxes = arrays["boxes.npy"]
        self._cls = arrays["cls_probs.npy"]
        index = np.asarray(arrays["index.npy"])
        self._ids = np.array(index["image_id"], dtype=np.int64)
        self._ids.flags.writeable = False
        # Python lists: get() reads one row, and list indexing beats numpy scalars.
        self._offsets = index["offset"].tolist()
        self._counts = index["count"].tolist()
        self._sizes = list(zip(index["width"].tolist(), index["height"].tolist(), strict=True))
        self._row = {image_id: row for row, image_id in enumerate(self._ids.tolist())}

    @classmethod
    def open(cls, root: str | Path, verify: bool = False) -> RegionStore:
        """Open a store directory.

        Args:
            root: the store directory.
            verify: recompute every array file's sha256 and compare with ``meta.json``
                (reads the whole store once; see also :func:`verify_store`).

        Opening always checks what costs no reading: ``meta.json``'s fields, every array
        file's size on disk against its header (a truncated or padded file), shapes and
        dtypes against ``meta.json``, and an index that tiles the region arrays.

        Raises:
            VlpError: a missing or unreadable file, arrays that disagree with
                ``meta.json``, or (with ``verify``) a checksum mismatch; one line naming
                the file.
        """
        root = Path(root)
        meta = _read_meta(root)
        arrays = {name: _load_array(root / name) for name in ARRAY_FILES}
        _check_arrays(root, meta, arrays)
        if verify:
            problems = _checksum_problems(root, meta)
            if problems:
                raise VlpError(problems[0])
        return cls(root, meta, arrays)

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root}

    def __setstate__(self, state: dict[str, Any]) -> None:
        other = RegionStore.open(state["root"])
        self.__dict__.update(other.__dict__)

    @property
    def feature_dim(self) -> int:
        """D, the size of a region feature."""
        return int(self.meta["feature_dim"])

    @property
    def num_classes(self) -> int:
        """C, the size of a class distribution (0 if the source had none)."""
        return int(self.meta["num_classes"])

    @property
    def class_names(self) -> list[str] | None:
        """The detector's class names, if the source gave them."""
        names = self.meta.get("class_names")
        return list(names) if names else None

    @property
    def image_ids(self) -> np.ndarray:
        """(N_images,) int64 image ids, sorted (read-only)."""
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._row

    def __repr__(self) -> str:
        return (f"RegionStore({str(self.root)!r}, images={len(self)}, "
                f"feature_dim={self.feature_dim}, num_classes={self.num_classes})")

    def _row_of(self, image_id: int) -> int:
        row = self._row.get(image_id)
        if row is None:
            raise VlpError(f"{self.root}: no regions for image {image_id} "
                           f"(the store holds {len(self)} images)")
        return row

    def num_regions(self, image_id: int) -> int:
        """Regions stored for ``image_id``."""
        return int(self._counts[self._row_of(image_id)])

    def region_counts(self) -> dict[int, int]:
        """Regions per image id, read from the index only (for dynamic batching)."""
        return dict(zip(self._ids.tolist(), self._counts, strict=True))

    def get(self, image_id: int) -> Regions:
        """The regions of one image, as float32 copies.

        Raises:
            VlpError: the image is not in the store (names the store directory).
        """
        row = self._row_of(image_id)
        start, stop = self._offsets[row], self._offsets[row] + self._counts[row]
        width, height = self._sizes[row]
        return Regions(int(image_id), width, height,
                       np.array(self._features[start:stop], dtype=np.float32),
                       np.array(self._boxes[start:stop], dtype=np.float32),
                       np.array(self._cls[start:stop], dtype=np.float32))

    def regions(self) -> Iterator[Regions]:
        """Every image's regions, in image id order (e.g. to rewrite a store)."""
        for image_id in self._ids.tolist():
            yield self.get(image_id)


_META_KEYS = ("format_version", "feature_dim", "num_classes", "dtype", "n_images",
              "n_regions", "sha256")
_META_INTS = {"feature_dim": 1, "num_classes": 0, "n_images": 1, "n_regions": 1}  # minimum


def _read_meta(root: Path) -> dict[str, Any]:
    path = root / "meta.json"
    if not root.is_dir():
        what = "is a file, not a region store directory" if root.exists() else \
            "no such region store directory"
        raise input_error(root, None, what)
    if not path.is_file():
        raise input_error(path, None, "missing; not a region store (or an unfinished one)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise input_error(path, None, f"unreadable JSON ({err})") from None
    if not isinstance(meta, dict):
        raise input_error(path, None, f"expected a JSON object, got {type(meta).__name__}")
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        raise input_error(path, missing[0], "missing")
    _check_meta_fields(path, meta)
    return meta


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_meta_fields(path: Path, meta: dict[str, Any]) -> None:
    """Types and ranges of meta.json's fields, before any of them is used."""
    version = meta["format_version"]
    if not _is_int(version) or version != FORMAT_VERSION:
        raise input_error(path, "format_version", f"expected {FORMAT_VERSION}, got "
                          f"{version!r}; this store was written by another vlp version")
    for key, low in _META_INTS.items():
        if not _is_int(meta[key]) or meta[key] < low:
            raise input_error(path, key, f"expected an integer ≥ {low}, got {meta[key]!r}")
    if not isinstance(meta["dtype"], str) or meta["dtype"] not in DTYPES:
        raise input_error(path, "dtype", f"expected one of {DTYPES}, got {meta['dtype']!r}")
    sums = meta["sha256"]
    if not isinstance(sums, dict):
        raise input_error(path, "sha256", f"expected an object of file → sha256, got "
                          f"{type(sums).__name__}")
    for name in ARRAY_FILES:
        digest = sums.get(name)
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise input_error(path, f"sha256.{name}", "expected a 64-digit hex sha256, got "
                              f"{digest!r}" if name in sums else "missing")
    names = meta.get("class_names")
    if names is not None and (not isinstance(names, list) or len(names) != meta["num_classes"]
                              or not all(isinstance(n, str) for n in names)):
        raise input_error(path, "class_names", f"expected null or a list of "
                          f"{meta['num_classes']} strings")


def _read_npy_header(f: IO[bytes]) -> tuple[np.dtype, tuple[int, ...], bool]:
    """dtype, shape and Fortran order from an ``.npy`` header; ``f`` is left at the data.

    Raises:
        ValueError: not an ``.npy`` header (numpy's parser never evaluates code).
    """
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):  # 3.0 differs only in a UTF-8 header
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    return dtype, tuple(shape), bool(fortran)


def _size_problem(dtype: np.dtype, shape: tuple[int, ...], header: int, size: int) -> str:
    """'' if a header of ``header`` bytes and its array fill exactly ``size`` bytes."""
    rows = shape[0] if shape else 1
    row_bytes = math.prod(shape[1:]) * dtype.itemsize
    expected = header + rows * row_bytes
    if size == expected:
        return ""
    how = "truncated" if size < expected else "padded"
    return (f"{size} bytes, expected {expected} (header {header} + {rows} rows × "
            f"{row_bytes} bytes): the file is {how}")


def _load_array(path: Path) -> np.ndarray:
    if not path.is_file():
        what = "is a directory, expected an .npy file" if path.is_dir() else "missing"
        raise input_error(path, None, f"{what}; the region store is incomplete")
    try:
        with path.open("rb") as f:
            dtype, shape, _ = _read_npy_header(f)
            header = f.tell()
        size = path.stat().st_size
    except (OSError, ValueError, EOFError) as err:
        raise input_error(path, None, f"not a readable .npy array ({err})") from None
    if dtype.hasobject:
        raise input_error(path, None, "holds pickled Python objects; a region store holds "
                          "numbers only (rebuild the store)")
    problem = _size_problem(dtype, shape, header, size)
    if problem:
        raise input_error(path, None, f"{problem}; rebuild the store")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise input_error(path, None, f"not a readable .npy array ({err})") from None


def _checksum_problems(root: Path, meta: dict[str, Any]) -> list[str]:
    """One line per array file whose sha256 differs from meta.json's (or is unreadable)."""
    problems = []
    for name in ARRAY_FILES:
        path = root / name
        try:
            digest = sha256_file(path)
        except OSError as err:
            problems.append(f"{path}: cannot read ({err.strerror})")
            continue
        if digest != meta["sha256"].get(name):
            problems.append(f"{path}: checksum mismatch with meta.json (the file is corrupt "
                            "or was changed); rebuild the store")
    return problems


def verify_store(root: str | Path) -> list[str]:
    """Check a store completely: what :meth:`RegionStore.open` checks, and every array
    file's sha256 against ``meta.json`` (reads the whole store once).

    Args:
        root: the store directory.

    Returns:
        One line per problem, each naming the file (``"…/features.npy: checksum mismatch
        …"``); empty when the store is intact. Never raises for a bad store.

    Example:
        >>> problems = verify_store("world/features")  # doctest: +SKIP
        >>> if problems: raise SystemExit("\\n".join(problems))
    """
    root = Path(root)
    try:
        meta = _read_meta(root)
    except VlpError as err:
        return [str(err)]
    problems = []
    try:
        _check_arrays(root, meta, {name: _load_array(root / name) for name in ARRAY_FILES})
    except VlpError as err:
        problems.append(str(err))
    named = {p.split(": ", 1)[0] for p in problems}
    problems += [p for p in _checksum_problems(root, meta) if p.split(": ", 1)[0] not in named]
    return problems


def _check_arrays(root: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Shapes and dtypes against meta.json, and an index that tiles the region arrays."""
    n, dim, n_cls, dtype = (meta["n_regions"], meta["feature_dim"], meta["num_classes"],
                            np.dtype(meta["dtype"]))
    expected = {"features.npy": ((n, dim), dtype), "boxes.npy": ((n, 4), np.dtype("float32")),
                "cls_probs.npy": ((n, n_cls), dtype),
                "index.npy": ((meta["n_images"],), INDEX_DTYPE)}
    for name, (shape, dt) in expected.items():
        arr = arrays[name]
        if arr.shape != shape or arr.dtype != dt:
            raise input_error(root / name, None, f"expected {dt} array of shape {shape} "
                              f"(from meta.json), got {arr.dtype} {arr.shape}")
    index = np.asarray(arrays["index.npy"])
    ids, counts = index["image_id"], index["count"]
    order = np.argsort(index["offset"], kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts[order])[:-1]])
    if (len(ids) > 1 and (np.diff(ids) <= 0).any()) or (counts <= 0).any() \
            or not np.array_equal(index["offset"][order], starts) or counts.sum() != n:
        raise input_error(root / "index.npy", None, "expected unique sorted image ids whose "
                          f"(offset, count) rows tile the {n} regions exactly")


# --------------------------------------------------------------------------- sources


def parse_image_id(name: str) -> int:
    """An integer image id from a published id or file stem.

    Plain integers are kept; otherwise the trailing digits are used, so
    ``"COCO_val2014_000000060623"`` → 60623 and ``"n161313"`` → 161313. The prefix is
    dropped, so two ids that differ only in prefix collide (the writer then reports a
    duplicate id); pass your own ``parse_id`` to the readers if that matters.

    Raises:
        ValueError: the name has no trailing digits.
    """
    name = name.strip()
    match = re.search(r"(\d+)$", name)
    if match is None:
        raise ValueError(f"cannot derive an integer image id from {name!r} "
                         "(expected trailing digits)")
    return int(match.group(1))


def distribution_from_argmax(objects_id: np.ndarray, objects_conf: np.ndarray,
                             num_classes: int) -> np.ndarray:
    """A class distribution from a detector's argmax class and its confidence.

    The argmax class gets its confidence; the remaining mass is spread uniformly over
    the other classes, so every row sums to 1 and the argmax is kept. This is the
    closest distribution to what MRC-KL expects when only (class, confidence) was saved.

    Args:
        objects_id: (n,) class ids in ``[0, num_classes)``.
        objects_conf: (n,) confidences, clipped to [0, 1].
        num_classes: C.

    Returns:
        (n, C) float32.

    Raises:
        ValueError: a class id out of range.
    """
    ids = np.asarray(objects_id, dtype=np.int64).reshape(-1)
    conf = np.clip(np.asarray(objects_conf, dtype=np.float64).reshape(-1), 0.0, 1.0)
    if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
        raise ValueError(f"class id {int(ids.max() if ids.max() >= 0 else ids.min())} "
                         f"out of range for num_classes={num_classes}")
    if num_classes == 1:
        return np.ones((len(ids), 1), dtype=np.float32)
    probs = np.repeat(((1.0 - conf) / (num_classes - 1))[:, None], num_classes, axis=1)
    probs[np.arange(len(ids)), ids] = conf
    return probs.astype(np.float32)


# BUTD TSV column layouts, chosen by column count when no fieldnames are given.
BUTD_FIELDS = ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features")
BUTD_CLS_FIELDS = (*BUTD_FIELDS, "cls_prob")
LXMERT_FIELDS = ("img_id", "img_h", "img_w", "objects_id", "objects_conf", "attrs_id",
                 "attrs_conf", "num_boxes", "boxes", "features")
_LAYOUTS = {6: BUTD_FIELDS, 7: BUTD_CLS_FIELDS, 10: LXMERT_FIELDS}
_ALIASES = {"img_id": "image_id", "img_h": "image_h", "img_w": "image_w"}


class _RowError(Exception):
    """A problem with one field of one TSV row (turned into a VlpError with the line)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class _Fields(NamedTuple):
    """A source's names for the image id and the three region fields (for messages)."""

    image_id: str | None
    features: str
    boxes: str
    classes: str


BOX_SLACK = 1.0  # pixels: detectors clip boxes to [0, w - 1] or [0, w]
_MAX_EXAMPLES = 3


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:200] or type(err).__name__


def _region_problem(features: np.ndarray, boxes: np.ndarray, cls_probs: np.ndarray,
                    fields: _Fields) -> tuple[str, str] | None:
    """(field, message) if one image's arrays cannot be stored, else None."""
    n = features.shape[0] if features.ndim == 2 else 0
    if n == 0 or features.shape[1] == 0:
        return fields.features, (f"expected shape (n, D) with n ≥ 1 regions and D ≥ 1, got "
                                 f"{features.shape}")
    for name, arr, cols in ((fields.boxes, boxes, "4"), (fields.classes, cls_probs, "C")):
        if arr.ndim != 2 or arr.shape[0] != n or (cols == "4" and arr.shape[1] != 4):
            return name, f"expected shape ({n}, {cols}) (one row per region), got {arr.shape}"
    for name, arr in ((fields.features, features), (fields.boxes, boxes),
                      (fields.classes, cls_probs)):
        finite = np.isfinite(arr)
        if not finite.all():
            return name, f"non-finite value (NaN or inf) in region {np.argwhere(~finite)[0, 0]}"
    if cls_probs.size and cls_probs.min() < 0:
        return fields.classes, f"expected probabilities ≥ 0, got {cls_probs.min():g}"
    return None


class _SourceAudit:
    """What a reader checks across one source's images: unique ids, one D and one C, and
    boxes inside their image (legal but suspicious: counted, and reported once by
    :meth:`finish` as a data warning with the first examples)."""

    def __init__(self, id_hint: str = "") -> None:
        self._id_hint = id_hint
        self._ids: dict[int, str] = {}
        self._dims: tuple[int, int, str] | None = None
        self._boxes = self._outside = self._inverted = 0
        self._examples: list[str] = []

    def check(self, r: Regions, origin: str, fields: _Fields) -> tuple[str | None, str] | None:
        """(field, message) if ``r``, read from ``origin``, disagrees with earlier images."""
        if not -INT64_MAX <= r.image_id <= INT64_MAX:
            return fields.image_id, f"image id {r.image_id} is outside the int64 range"
        before = self._ids.setdefault(r.image_id, origin)
        if before != origin:
            return fields.image_id, (f"image id {r.image_id} is also the id of {before}; "
                                     f"ids must be unique{self._id_hint}")
        dim, n_cls = r.features.shape[1], r.cls_probs.shape[1]
        if self._dims is None:
            self._dims = (dim, n_cls, origin)
        elif dim != self._dims[0]:
            return fields.features, (f"expected {self._dims[0]} features per region (as in "
                                     f"{self._dims[2]}), got {dim}")
        elif n_cls != self._dims[1]:
            return fields.classes, (f"expected {self._dims[1]} class scores per region (as "
                                    f"in {self._dims[2]}), got {n_cls}")
        self._count_boxes(r)
        return None

    def _count_boxes(self, r: Regions) -> None:
        b = r.boxes
        inverted = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
        outside = ((b[:, :2] < -BOX_SLACK).any(axis=1) | (b[:, 2] > r.width + BOX_SLACK)
                   | (b[:, 3] > r.height + BOX_SLACK))
        self._boxes += len(b)
        self._inverted += int(inverted.sum())
        self._outside += int(outside.sum())
        for k in np.flatnonzero(inverted | outside)[:_MAX_EXAMPLES - len(self._examples)]:
            x1, y1, x2, y2 = b[k].tolist()
            self._examples.append(f"image {r.image_id} region {k}: ({x1:g}, {y1:g}, {x2:g}, "
                                  f"{y2:g}) in {r.width}×{r.height}")

    def finish(self, path: Path, field: str) -> None:
        """One data warning for the whole source if any box was outside or inverted."""
        if self._outside or self._inverted:
            data_warning(path, field, f"{self._outside} of {self._boxes} boxes lie outside "
                         f"their image and {self._inverted} are inverted (x2 < x1 or "
                         f"y2 < y1); first: {'; '.join(self._examples)}")


def _decode(row: dict[str, str], field: str, n: int, dtype: str, cols: int | None) -> np.ndarray:
    """A base64 raw buffer → (n, cols) array; cols None: inferred from the length."""
    text = row[field].strip()
    if text.startswith(("b'", 'b"')):  # Python 3 ports that wrote str(bytes)
        text = text[2:-1]
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise _RowError(field, f"invalid base64 ({err})") from None
    size = np.dtype(dtype).itemsize
    if cols is None:
        if len(raw) == 0 or len(raw) % (n * size):
            raise _RowError(field, f"expected num_boxes×D {dtype} (a multiple of "
                            f"{n}×{size} = {n * size} bytes), got {len(raw)} bytes")
        cols = len(raw) // (n * size)
    elif len(raw) != n * cols * size:
        shape = f"num_boxes×{cols}" if cols > 1 else "num_boxes"
        raise _RowError(field, f"expected {shape} {dtype} = {n * cols * size} bytes, "
                        f"got {len(raw)}")
    return np.frombuffer(raw, dtype=dtype).reshape(n, cols)


def _int_field(row: dict[str, str], field: str) -> int:
    text = row[field].strip()
    try:
        value = float(text)
    except ValueError:
        raise _RowError(field, f"expected a number, got {text[:40]!r}") from None
    if not _positive_int(value):
        raise _RowError(field, f"expected a positive integer, got {text[:40]!r}")
    return int(text) if text.isdigit() else int(value)


def _tsv_classes(row: dict[str, str], n: int, num_classes: int) -> tuple[np.ndarray, str]:
    if "cls_prob" in row:
        return _decode(row, "cls_prob", n, "float32", None), "cls_prob"
    if "objects_id" in row and "objects_conf" in row:
        ids = _decode(row, "objects_id", n, "int64", 1)
        conf = _decode(row, "objects_conf", n, "float32", 1)
        try:
            return distribution_from_argmax(ids, conf, num_classes), "objects_conf"
        except ValueError as err:
            raise _RowError("objects_id", str(err)) from None
    return np.zeros((n, 0), dtype=np.float32), "cls_prob"


def _tsv_regions(row: dict[str, str], num_classes: int,
                 parse_id: Callable[[str], int]) -> tuple[Regions, _Fields]:
    try:
        image_id = parse_id(row["image_id"])
    except ValueError as err:
        raise _RowError("image_id", str(err)) from None
    n = _int_field(row, "num_boxes")
    boxes = _decode(row, "boxes", n, "float32", 4).astype(np.float32)
    features = _decode(row, "features", n, "float32", None).astype(np.float32)
    cls_probs, cls_field = _tsv_classes(row, n, num_classes)
    fields = _Fields("image_id", "features", "boxes", cls_field)
    problem = _region_problem(features, boxes, cls_probs, fields)
    if problem:
        raise _RowError(*problem)
    return Regions(image_id, _int_field(row, "image_w"), _int_field(row, "image_h"),
                   features, boxes, cls_probs.astype(np.float32)), fields


def _tsv_layout(path: Path, first: list[str], fieldnames: Sequence[str] | None) -> list[str]:
    if fieldnames is None:
        if len(first) not in _LAYOUTS:
            raise input_error(path, None, f"line 1: expected 6 (BUTD), 7 (BUTD with cls_prob) "
                              f"or 10 (LXMERT) tab-separated columns, got {len(first)}; "
                              "pass fieldnames= for other layouts")
        fieldnames = _LAYOUTS[len(first)]
    names = [_ALIASES.get(name, name) for name in fieldnames]
    required = ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features")
    missing = [name for name in required if name not in names]
    if missing:
        raise input_error(path, missing[0], f"not among the fieldnames {list(fieldnames)}")
    return names


def read_butd_tsv(path: str | Path, fieldnames: Sequence[str] | None = None,
                  num_classes: int = VG_OBJECT_CLASSES,
                  parse_id: Callable[[str], int] = parse_image_id) -> Iterator[Regions]:
    """Regions from a bottom-up-attention TSV (BUTD, ViLBERT, LXMERT, VisualBERT).

    Rows are tab-separated, without a header. With ``fieldnames=None`` the layout is
    chosen by column count: 6 → BUTD ``generate_tsv.py`` (image_id, image_w, image_h,
    num_boxes, boxes, features), 7 → the same plus ``cls_prob``, 10 → LXMERT (img_id,
    img_h, img_w, objects_id, objects_conf, attrs_id, attrs_conf, num_boxes, boxes,
    features). ``img_*`` and ``image_*`` names are interchangeable. Array fields are
    base64 raw buffers: boxes float32 (n×4), features float32 (n×D), cls_prob float32
    (n×C), objects_id int64 (n), objects_conf float32 (n).

    Class distributions: ``cls_prob`` when present (C from the data, e.g. 1601 with
    background); otherwise built from objects_id/objects_conf with
    :func:`distribution_from_argmax` over ``num_classes``; otherwise C = 0.

    Every row must have the same D and C, a unique image id and finite values. Boxes
    outside their image or inverted (x2 < x1) are legal but suspicious: after the last
    row they are reported once with :func:`vlp.errors.data_warning` (an error in strict
    mode), with their count and the first examples.

    Args:
        path: the TSV file.
        fieldnames: column names, if not one of the three layouts above.
        num_classes: C for distributions rebuilt from objects_id/objects_conf.
        parse_id: string image id → int (default :func:`parse_image_id`, trailing digits).

    Raises:
        VlpError: naming the file, line and field (not UTF-8, bad base64, wrong byte
            count, a repeated id, ...).
    """
    path = Path(path)
    if path.is_dir():
        raise input_error(path, None, "is a directory; expected a TSV file")
    # Feature fields are megabytes long; csv's default limit is 128 KiB. Raising the
    # process-wide limit is harmless. (sys.maxsize overflows a C long on Windows.)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with path.open(newline="", encoding="utf-8") as f:
            yield from _read_tsv_rows(path, csv.reader(f, delimiter="\t"), fieldnames,
                                      num_classes, parse_id)
    except OSError as err:
        raise input_error(path, None, f"cannot read ({err.strerror})") from None


def _read_tsv_rows(path: Path, reader: Iterator[list[str]], fieldnames: Sequence[str] | None,
                   num_classes: int, parse_id: Callable[[str], int]) -> Iterator[Regions]:
    names: list[str] | None = None
    audit = _SourceAudit()
    line = 0
    try:
        for line, values in enumerate(reader, start=1):
            if not values:
                continue
            names = names or _tsv_layout(path, values, fieldnames)
            if len(values) != len(names):
                raise _RowError(names[0], f"expected {len(names)} tab-separated columns, "
                                f"got {len(values)}")
            regions, fields = _tsv_regions(dict(zip(names, values, strict=True)), num_classes,
                                           parse_id)
            problem = audit.check(regions, f"line {line}", fields)
            if problem:
                raise _RowError(problem[0] or "image_id", problem[1])
            yield regions
    except _RowError as err:
        raise input_error(path, err.field, f"line {line}: {err}") from None
    except csv.Error as err:
        raise input_error(path, None, f"line {line + 1}: malformed TSV ({err})") from None
    except UnicodeDecodeError:
        bad_line, byte = _first_non_utf8_line(path)
        raise input_error(path, None, f"line {bad_line}: not UTF-8 text (byte 0x{byte:02x}); "
                          "expected a tab-separated text file") from None
    if names is None:
        raise input_error(path, None, "empty file; expected one row per image")
    audit.finish(path, "boxes")


def _first_non_utf8_line(path: Path) -> tuple[int, int]:
    """(line number, first bad byte) of the first line that is not UTF-8 (read again in
    binary: the text decoder fails on a whole chunk, not on a line)."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                return number, raw[err.start]
    return 0, 0


_NPZ_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError,
                    RuntimeError, NotImplementedError, ValueError)
_NUMERIC_KINDS = "iuf"


def _npz_member(path: Path, zf: zipfile.ZipFile, member: zipfile.ZipInfo,
                pickled: bool = False) -> Any:
    """One array of an ``.npz``, parsed without numpy's pickle support.

    An object (pickled) array is refused, or with ``pickled`` loaded by
    :func:`vlp.safe_pickle.safe_load` (plain data and numpy arrays only, nothing run).
    """
    key = member.filename[:-4]
    with zf.open(member) as f:
        try:
            dtype, shape, fortran = _read_npy_header(f)
        except (ValueError, EOFError) as err:
            raise input_error(path, key, f"not a readable .npy array ({_one_line(err)})") from None
        if dtype.hasobject:
            if pickled:
                return safe_load(f, f"{path}: field '{key}'")
            raise input_error(path, key, "holds pickled Python objects, which are not loaded; "
                              "expected a numeric array")
        problem = _size_problem(dtype, shape, f.tell(), member.file_size)
        if problem or dtype.itemsize == 0:
            raise input_error(path, key, f"the array data is {problem or 'of zero-size items'}")
        raw = f.read()
    if not raw:
        return np.zeros(shape, dtype)
    return np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _read_npz(path: Path) -> tuple[dict[str, np.ndarray], bool]:
    """The arrays of an ``.npz`` file but ``info``, and whether it has an ``info``."""
    if path.is_dir():
        raise input_error(path, None, "is a directory; expected an .npz file")
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.infolist() if m.filename.endswith(".npy")]
            arrays = {m.filename[:-4]: _npz_member(path, zf, m) for m in members
                      if m.filename != "info.npy"}
    except _NPZ_READ_ERRORS as err:
        raise input_error(path, None, f"not a readable .npz (zip) file "
                          f"({_one_line(err)})") from None
    return arrays, any(m.filename == "info.npy" for m in members)


def _npz_info(path: Path) -> dict[Any, Any]:
    """py-bottom-up-attention's ``info`` dict, stored as a pickled object array: loaded
    with :func:`vlp.safe_pickle.safe_load`, which refuses anything but plain data and
    numpy arrays before any of it runs."""
    try:
        with zipfile.ZipFile(path) as zf:
            info = _npz_member(path, zf, zf.getinfo("info.npy"), pickled=True)
    except _NPZ_READ_ERRORS as err:
        raise input_error(path, "info", f"unreadable ({_one_line(err)})") from None
    if isinstance(info, np.ndarray) and info.dtype == object and info.size == 1:
        info = info.reshape(-1)[0]
    if not isinstance(info, dict):
        got = (f"an array of shape {info.shape}" if isinstance(info, np.ndarray)
               else type(info).__name__)
        raise input_error(path, "info", f"expected a pickled dict, got {got}")
    return info


def _numeric(path: Path, field: str, value: Any) -> np.ndarray:
    """``value`` as a numeric (integer or float) array, or one line naming the field."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as err:
        raise input_error(path, field, f"expected a numeric array ({_one_line(err)})") from None
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise input_error(path, field, f"expected a numeric array, got dtype {arr.dtype}")
    return arr


def _npz_scalar(path: Path, data: Mapping[str, Any], keys: Sequence[str]) -> int:
    for key in keys:
        if key in data:
            arr = _numeric(path, key, data[key])
            value = arr.reshape(-1)[0].item() if arr.size == 1 else None
            if value is None or not _positive_int(value):
                shown = value if value is not None else f"an array of shape {arr.shape}"
                raise input_error(path, key, f"expected a positive integer, got {shown}")
            return int(value)
    raise input_error(path, keys[0], f"missing (expected one of {list(keys)})")


def _npz_classes(path: Path, data: Mapping[str, Any], n: int,
                 num_classes: int) -> tuple[np.ndarray, str]:
    if "cls_prob" in data:
        return _numeric(path, "cls_prob", data["cls_prob"]).astype(np.float32), "cls_prob"
    if "objects_id" in data and "objects_conf" in data:
        ids = _numeric(path, "objects_id", data["objects_id"]).reshape(-1)
        conf = _numeric(path, "objects_conf", data["objects_conf"]).reshape(-1)
        for name, arr in (("objects_id", ids), ("objects_conf", conf)):
            if arr.size != n:
                raise input_error(path, name, f"expected {n} values (one per region), "
                                  f"got {arr.size}")
        if ids.dtype.kind == "f" and not (np.isfinite(ids) & (ids == np.round(ids))).all():
            raise input_error(path, "objects_id", "expected integer class ids")
        try:
            return distribution_from_argmax(ids, conf, num_classes), "objects_conf"
        except ValueError as err:
            raise input_error(path, "objects_id", str(err)) from None
    return np.zeros((n, 0), dtype=np.float32), "cls_prob"


def _npz_features(path: Path, x: np.ndarray, n: int) -> np.ndarray:
    """(n, D) from ``x`` saved as (n, D) or, by py-bottom-up-attention, as (D, n)."""
    if x.ndim != 2 or n not in x.shape:
        raise input_error(path, "x", f"expected shape (num_bbox, D) or (D, num_bbox) with "
                          f"num_bbox={n}, got {tuple(x.shape)}")
    # A square (n, n) array is taken as (n, D): regions first is the common layout.
    return x if x.shape[0] == n else x.T


def _required(path: Path, data: Mapping[str, Any], key: str) -> Any:
    if key not in data:
        raise input_error(path, key, f"missing (the file has {sorted(data)})")
    return data[key]


def _npz_arrays(path: Path, arrays: dict[str, np.ndarray], has_info: bool,
                load_info: bool) -> tuple[dict[str, Any], np.ndarray, np.ndarray, _Fields]:
    """The file's data (with ``info`` merged in), features, boxes and field names."""
    if "x" in arrays:  # py-bottom-up-attention / VisualBERT convention
        data = {**_npz_info(path), **arrays} if has_info and load_info else arrays
        boxes = _numeric(path, "bbox", _required(path, data, "bbox"))
        n = _npz_scalar(path, data, ("num_bbox",)) if "num_bbox" in data else \
            (boxes.shape[0] if boxes.ndim else 0)
        features = _npz_features(path, _numeric(path, "x", data["x"]), n)
        return data, features, boxes, _Fields(None, "x", "bbox", "cls_prob")
    if "features" in arrays:
        features = _numeric(path, "features", arrays["features"])
        boxes = _numeric(path, "boxes", _required(path, arrays, "boxes"))
        return arrays, features, boxes, _Fields(None, "features", "boxes", "cls_prob")
    raise input_error(path, "features", f"missing (expected 'x' or 'features'; "
                      f"the file has {sorted(arrays)})")


def _npz_regions(path: Path, num_classes: int, load_info: bool,
                 parse_id: Callable[[str], int]) -> tuple[Regions, _Fields]:
    try:
        image_id = parse_id(path.stem)
    except ValueError as err:
        raise input_error(path, None, str(err)) from None
    arrays, has_info = _read_npz(path)
    data, features, boxes, fields = _npz_arrays(path, arrays, has_info, load_info)
    n = features.shape[0] if features.ndim == 2 else 0
    width = _npz_scalar(path, data, ("image_w", "width"))
    height = _npz_scalar(path, data, ("image_h", "height"))
    cls_probs, cls_field = _npz_classes(path, data, n, num_classes)
    fields = fields._replace(classes=cls_field)
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf, refused below
        features, boxes = features.astype(np.float32), boxes.astype(np.float32)
    problem = _region_problem(features, boxes, cls_probs, fields)
    if problem:
        raise input_error(path, *problem)
    return Regions(image_id, width, height, features, boxes, cls_probs), fields


def read_npz_dir(root: str | Path, num_classes: int = VG_OBJECT_CLASSES,
                 load_info: bool = True,
                 parse_id: Callable[[str], int] = parse_image_id) -> Iterator[Regions]:
    """Regions from a directory of per-image ``.npz`` files, in file name order.

    Two key conventions are read:

    * py-bottom-up-attention / VisualBERT: ``x`` (features, (n, D) or (D, n), told apart
      by ``num_bbox``), ``bbox`` (n, 4), ``num_bbox``, ``image_h``, ``image_w`` and an
      optional ``info`` dict with ``objects_id``, ``objects_conf``, ``cls_prob``.
    * simple: ``features`` (n, D), ``boxes`` (n, 4), optional ``cls_prob`` (n, C),
      ``width``, ``height``.

    Files are read with :mod:`zipfile` and numpy's header parser, never with numpy's
    pickle support. ``info`` is a pickled object: it is loaded by
    :func:`vlp.safe_pickle.safe_load`, which rebuilds plain data and numpy arrays only and
    refuses any other class or function before anything runs; ``load_info=False`` skips
    it. Any other pickled entry is refused. Class distributions come from ``cls_prob``,
    else objects_id/objects_conf (:func:`distribution_from_argmax` over ``num_classes``),
    else C = 0. The image id is the file stem's trailing digits (:func:`parse_image_id`);
    two files with the same id are an error naming both. Boxes outside their image or
    inverted are reported once for the directory (:func:`vlp.errors.data_warning`).

    Raises:
        VlpError: naming the file and key.
    """
    root = Path(root)
    audit = _SourceAudit(" (the id is the file name's trailing digits; rename one file "
                         "or pass parse_id=)")
    fields = _Fields(None, "x", "bbox", "cls_prob")
    for path in _npz_files(root):
        try:
            regions, fields = _npz_regions(path, num_classes, load_info, parse_id)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise input_error(path, None, f"not a readable .npz file ({_one_line(err)})") \
                from None
        problem = audit.check(regions, str(path), fields)
        if problem:
            raise input_error(path, *problem)
        yield regions
    audit.finish(root, fields.boxes)


def _npz_files(root: Path) -> list[Path]:
    if root.is_file():
        raise input_error(root, None, "is a file; expected a directory of .npz files")
    if not root.is_dir():
        raise input_error(root, None, "no such directory")
    files = sorted(root.glob("*.npz"))
    if not files:
        raise input_error(root, None, "no .npz files in this directory")
    return files


# --------------------------------------------------------------------------- building


def build_store(regions: Iterable[Regions], out_dir: str | Path, *, dtype: str = "float16",
                class_names: Sequence[str] | None = None, source: str = "",
                info: Mapping[str, Any] | None = None, progress: bool = False,
                total: int | None = None, overwrite: bool = False) -> Path:
    """Write any iterable of :class:`Regions` to a new store (atomically).

    D and C are taken from the first image; every later image must agree. Identical
    inputs give byte-identical stores (``meta.json`` has no timestamps or paths).

    Args:
        regions: the images' regions.
        out_dir: the store directory.
        dtype: ``"float16"`` or ``"float32"`` storage.
        class_names: optional names of the C classes.
        source: description kept in ``meta.json``.
        info: extra facts kept in ``meta.json``.
        progress: show a tqdm progress bar (on a terminal; never in a log or pipe).
        total: number of images, for the progress bar.
        overwrite: replace an existing non-empty ``out_dir`` (refused otherwise, before
            the first image is read).

    Returns:
        ``out_dir``.
    """
    claim_store(out_dir, overwrite=overwrite)
    items = iter(tqdm(regions, total=total, unit="img", disable=None if progress else True,
                      desc="regions"))
    first = next(items, None)
    if first is None:
        raise VlpError(f"{out_dir}: the source has no images; nothing written")
    dim, n_cls = _dims(out_dir, first)
    with RegionStoreWriter(out_dir, dim, n_cls, dtype=dtype, class_names=class_names,
                           source=source, info=info, overwrite=overwrite) as writer:
        for r in itertools.chain([first], items):
            writer.add(r.image_id, r.width, r.height, r.features, r.boxes, r.cls_probs)
    return Path(out_dir)


def _dims(out_dir: str | Path, first: Regions) -> tuple[int, int]:
    if np.ndim(first.features) != 2 or np.ndim(first.cls_probs) != 2:
        raise VlpError(f"{out_dir}: image {first.image_id}: expected 2-d features and "
                       f"cls_probs, got shapes {np.shape(first.features)} and "
                       f"{np.shape(first.cls_probs)}")
    return int(first.features.shape[1]), int(first.cls_probs.shape[1])


def import_butd_tsv(src: str | Path, out_dir: str | Path, *,
                    num_classes: int = VG_OBJECT_CLASSES,
                    fieldnames: Sequence[str] | None = None, dtype: str = "float16",
                    class_names: Sequence[str] | None = None, progress: bool = True,
                    overwrite: bool = False) -> Path:
    """Build a store from a bottom-up-attention TSV (see :func:`read_butd_tsv`).

    ``out_dir`` is checked before anything is read: it may not be, hold or lie inside
    ``src``, and an existing non-empty ``out_dir`` needs ``overwrite=True``.

    Returns:
        ``out_dir``.
    """
    claim_store(out_dir, overwrite=overwrite, inputs=[src])
    regions = read_butd_tsv(src, fieldnames=fieldnames, num_classes=num_classes)
    return build_store(regions, out_dir, dtype=dtype, class_names=class_names,
                       source=f"bottom-up-attention TSV {Path(src).name}", progress=progress,
                       overwrite=overwrite)


def import_npz_dir(src: str | Path, out_dir: str | Path, *,
                   num_classes: int = VG_OBJECT_CLASSES, load_info: bool = True,
                   dtype: str = "float16", class_names: Sequence[str] | None = None,
                   progress: bool = True, overwrite: bool = False) -> Path:
    """Build a store from a directory of per-image ``.npz`` files (see :func:`read_npz_dir`).

    ``out_dir`` is checked before anything is read: it may not be, hold or lie inside
    ``src`` (so ``import_npz_dir(d, d)`` never deletes ``d``), and an existing non-empty
    ``out_dir`` needs ``overwrite=True``.

    Returns:
        ``out_dir``.
    """
    claim_store(out_dir, overwrite=overwrite, inputs=[src])
    total = len(_npz_files(Path(src)))
    regions = read_npz_dir(src, num_classes=num_classes, load_info=load_info)
    return build_store(regions, out_dir, dtype=dtype, class_names=class_names,
                       source=f"per-image npz directory {Path(src).name}",
                       progress=progress, total=total, overwrite=overwrite)
