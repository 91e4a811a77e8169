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

Importers of the formats users already have live in :mod:`vlp.data.formats` (the
bottom-up-attention TSV in :mod:`~vlp.data.formats.butd_tsv`, per-image ``.npz`` files in
:mod:`~vlp.data.formats.npz`); :func:`build_store` writes any iterable of :class:`Regions`.

Writing refuses an existing non-empty store directory unless ``overwrite=True``, and an
output that is, holds or lies inside the source (:func:`claim_store`). Opening checks what
costs no reading (``meta.json``'s fields, each ``.npy`` file's size against its header,
shapes, the index); :func:`verify_store` also compares every file's sha256 with
``meta.json``. The same inputs give byte-identical stores.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
import operator
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
from tqdm import tqdm

from vlp.errors import VlpError, input_error
from vlp.fileio import atomic_path, claim_output, sha256_file

FORMAT_VERSION = 1
ARRAY_FILES = ("features.npy", "boxes.npy", "cls_probs.npy", "index.npy")
INDEX_DTYPE = np.dtype([("image_id", "<i8"), ("offset", "<i8"), ("count", "<i8"),
                        ("width", "<i8"), ("height", "<i8")])
DTYPES = ("float16", "float32")
FLOAT16_MAX = float(np.finfo(np.float16).max)
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
            if not is_positive_int(value):
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


def is_positive_int(value: object) -> bool:
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


def read_npy_header(f: IO[bytes]) -> tuple[np.dtype, tuple[int, ...], bool]:
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


def npy_size_problem(dtype: np.dtype, shape: tuple[int, ...], header: int, size: int) -> str:
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
            dtype, shape, _ = read_npy_header(f)
            header = f.tell()
        size = path.stat().st_size
    except (OSError, ValueError, EOFError) as err:
        raise input_error(path, None, f"not a readable .npy array ({err})") from None
    if dtype.hasobject:
        raise input_error(path, None, "holds pickled Python objects; a region store holds "
                          "numbers only (rebuild the store)")
    problem = npy_size_problem(dtype, shape, header, size)
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


# --------------------------------------------------------------------------- ids


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
