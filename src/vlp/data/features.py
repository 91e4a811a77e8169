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
TSV (:func:`read_butd_tsv`) and per-image ``.npz`` files (:func:`read_npz_dir`);
:func:`build_store` writes any iterable of :class:`Regions`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import csv
import hashlib
import io
import itertools
import json
import operator
import re
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
from tqdm import tqdm

from vlp.errors import VlpError, input_error
from vlp.fileio import atomic_path

FORMAT_VERSION = 1
ARRAY_FILES = ("features.npy", "boxes.npy", "cls_probs.npy", "index.npy")
INDEX_DTYPE = np.dtype([("image_id", "<i8"), ("offset", "<i8"), ("count", "<i8"),
                        ("width", "<i8"), ("height", "<i8")])
DTYPES = ("float16", "float32")
FLOAT16_MAX = float(np.finfo(np.float16).max)
VG_OBJECT_CLASSES = 1600  # the Visual Genome Faster R-CNN of bottom-up attention


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


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

    Example:
        >>> with RegionStoreWriter(out, 2048, 1601) as w:  # doctest: +SKIP
        ...     w.add(42, 640, 480, features, boxes, cls_probs)
    """

    def __init__(self, out_dir: str | Path, feature_dim: int, num_classes: int,
                 dtype: str = "float16", class_names: Sequence[str] | None = None,
                 source: str = "", info: Mapping[str, Any] | None = None) -> None:
        self.out_dir = Path(out_dir)
        _check_writer_args(self.out_dir, feature_dim, num_classes, dtype, class_names)
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
        if image_id in self._seen:
            raise VlpError(f"{self.out_dir}: image {image_id}: duplicate image id "
                           "(already added to this store)")
        for name, value in (("width", width), ("height", height)):
            if not float(value) > 0 or int(value) != value:
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
            "sha256": {name: _sha256(self._tmp / name) for name in ARRAY_FILES},
        }
        (self._tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")


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
                (reads the whole store once).

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
            for name in ARRAY_FILES:
                if _sha256(root / name) != meta["sha256"].get(name):
                    raise input_error(root / name, None, "checksum mismatch with meta.json "
                                      "(the file is corrupt or was changed); rebuild the store")
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


def _read_meta(root: Path) -> dict[str, Any]:
    path = root / "meta.json"
    if not root.is_dir():
        raise input_error(root, None, "no such region store directory")
    if not path.is_file():
        raise input_error(path, None, "missing; not a region store (or an unfinished one)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise input_error(path, None, f"unreadable JSON ({err})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("sha256", {}), dict):
        raise input_error(path, None, "expected a JSON object with a 'sha256' object")
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        raise input_error(path, missing[0], "missing")
    if meta["format_version"] != FORMAT_VERSION:
        raise input_error(path, "format_version",
                          f"expected {FORMAT_VERSION}, got {meta['format_version']!r}")
    if meta["dtype"] not in DTYPES:
        raise input_error(path, "dtype", f"expected one of {DTYPES}, got {meta['dtype']!r}")
    return meta


def _load_array(path: Path) -> np.ndarray:
    if not path.is_file():
        raise input_error(path, None, "missing; the region store is incomplete")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise input_error(path, None, f"not a readable .npy array ({err})") from None


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
    try:
        value = float(row[field])
    except ValueError:
        raise _RowError(field, f"expected a number, got {row[field][:40]!r}") from None
    if value != int(value) or value <= 0:
        raise _RowError(field, f"expected a positive integer, got {row[field][:40]!r}")
    return int(value)


def _tsv_regions(row: dict[str, str], num_classes: int,
                 parse_id: Callable[[str], int]) -> Regions:
    try:
        image_id = parse_id(row["image_id"])
    except ValueError as err:
        raise _RowError("image_id", str(err)) from None
    n = _int_field(row, "num_boxes")
    boxes = _decode(row, "boxes", n, "float32", 4)
    features = _decode(row, "features", n, "float32", None)
    if "cls_prob" in row:
        cls_probs = _decode(row, "cls_prob", n, "float32", None)
    elif "objects_id" in row and "objects_conf" in row:
        ids = _decode(row, "objects_id", n, "int64", 1)
        conf = _decode(row, "objects_conf", n, "float32", 1)
        try:
            cls_probs = distribution_from_argmax(ids, conf, num_classes)
        except ValueError as err:
            raise _RowError("objects_id", str(err)) from None
    else:
        cls_probs = np.zeros((n, 0), dtype=np.float32)
    return Regions(image_id, _int_field(row, "image_w"), _int_field(row, "image_h"),
                   features.astype(np.float32), boxes.astype(np.float32),
                   cls_probs.astype(np.float32))


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

    Args:
        path: the TSV file.
        fieldnames: column names, if not one of the three layouts above.
        num_classes: C for distributions rebuilt from objects_id/objects_conf.
        parse_id: string image id → int (default :func:`parse_image_id`, trailing digits).

    Raises:
        VlpError: naming the file, line and field (bad base64, wrong byte count, ...).
    """
    path = Path(path)
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
    line = 0
    try:
        for line, values in enumerate(reader, start=1):  # noqa: B007 (line used in except)
            if not values:
                continue
            names = names or _tsv_layout(path, values, fieldnames)
            if len(values) != len(names):
                raise _RowError(names[0], f"expected {len(names)} tab-separated columns, "
                                f"got {len(values)}")
            yield _tsv_regions(dict(zip(names, values, strict=True)), num_classes, parse_id)
    except _RowError as err:
        raise input_error(path, err.field, f"line {line}: {err}") from None
    except csv.Error as err:
        raise input_error(path, None, f"line {line + 1}: malformed TSV ({err})") from None
    if names is None:
        raise input_error(path, None, "empty file; expected one row per image")


def _npz_scalar(path: Path, data: Mapping[str, np.ndarray], keys: Sequence[str]) -> int:
    for key in keys:
        if key in data:
            return int(np.asarray(data[key]).reshape(-1)[0])
    raise input_error(path, keys[0], f"missing (expected one of {list(keys)})")


def _npz_info(path: Path) -> dict[str, Any]:
    # The only pickle we accept: py-bottom-up-attention stores ``info`` as a pickled
    # dict. Pickle can run code, so it is read for this key alone (see load_info).
    with np.load(path, allow_pickle=True) as data:
        info = data["info"]
    info = info.item() if isinstance(info, np.ndarray) and info.dtype == object else info
    if not isinstance(info, dict):
        raise input_error(path, "info", f"expected a pickled dict, got {type(info).__name__}")
    return info


def _npz_classes(path: Path, data: Mapping[str, Any], n: int, num_classes: int) -> np.ndarray:
    if "cls_prob" in data:
        return np.asarray(data["cls_prob"], dtype=np.float32)
    if "objects_id" in data and "objects_conf" in data:
        try:
            return distribution_from_argmax(data["objects_id"], data["objects_conf"],
                                            num_classes)
        except ValueError as err:
            raise input_error(path, "objects_id", str(err)) from None
    return np.zeros((n, 0), dtype=np.float32)


def _npz_features(path: Path, x: np.ndarray, n: int) -> np.ndarray:
    """(n, D) from ``x`` saved as (n, D) or, by py-bottom-up-attention, as (D, n)."""
    if x.ndim != 2 or n not in x.shape:
        raise input_error(path, "x", f"expected shape (num_bbox, D) or (D, num_bbox) with "
                          f"num_bbox={n}, got {tuple(x.shape)}")
    # A square (n, n) array is taken as (n, D): regions first is the common layout.
    return x if x.shape[0] == n else x.T


def _npz_regions(path: Path, num_classes: int, load_info: bool,
                 parse_id: Callable[[str], int]) -> Regions:
    try:
        image_id = parse_id(path.stem)
    except ValueError as err:
        raise input_error(path, None, str(err)) from None
    with np.load(path, allow_pickle=False) as npz:
        data: dict[str, Any] = {k: npz[k] for k in npz.files if k != "info"}
        has_info = "info" in npz.files
    if "x" in data:  # py-bottom-up-attention / VisualBERT convention
        n = _npz_scalar(path, data, ("num_bbox",)) if "num_bbox" in data else len(data["bbox"])
        features, boxes = _npz_features(path, data["x"], n), data.get("bbox")
        if has_info and load_info:
            data = {**_npz_info(path), **data}
    elif "features" in data:
        features, boxes = data["features"], data.get("boxes")
        n = len(features)
    else:
        raise input_error(path, "features", f"missing (expected 'x' or 'features'; "
                          f"the file has {sorted(data)})")
    if boxes is None:
        raise input_error(path, "bbox" if "x" in data else "boxes", "missing")
    width = _npz_scalar(path, data, ("image_w", "width"))
    height = _npz_scalar(path, data, ("image_h", "height"))
    cls_probs = _npz_classes(path, data, n, num_classes)
    return Regions(image_id, width, height, np.asarray(features, dtype=np.float32),
                   np.asarray(boxes, dtype=np.float32), np.asarray(cls_probs, np.float32))


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

    ``info`` is a pickled object, and unpickling can run code: it is the only entry
    loaded with ``allow_pickle=True`` (everything else with ``allow_pickle=False``),
    and ``load_info=False`` skips it. Class distributions come from ``cls_prob``, else
    objects_id/objects_conf (:func:`distribution_from_argmax` over ``num_classes``),
    else C = 0. The image id is the file stem's trailing digits (:func:`parse_image_id`).

    Raises:
        VlpError: naming the file and key.
    """
    root = Path(root)
    files = _npz_files(root)
    for path in files:
        try:
            yield _npz_regions(path, num_classes, load_info, parse_id)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise input_error(path, None, f"not a readable .npz file ({err})") from None


def _npz_files(root: Path) -> list[Path]:
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
                total: int | None = None) -> Path:
    """Write any iterable of :class:`Regions` to a new store (atomically).

    D and C are taken from the first image; every later image must agree.

    Args:
        regions: the images' regions.
        out_dir: the store directory.
        dtype: ``"float16"`` or ``"float32"`` storage.
        class_names: optional names of the C classes.
        source: description kept in ``meta.json``.
        info: extra facts kept in ``meta.json``.
        progress: show a tqdm progress bar.
        total: number of images, for the progress bar.

    Returns:
        ``out_dir``.
    """
    items = iter(tqdm(regions, total=total, unit="img", disable=not progress,
                      desc="regions"))
    first = next(items, None)
    if first is None:
        raise VlpError(f"{out_dir}: the source has no images; nothing written")
    dim, n_cls = _dims(out_dir, first)
    with RegionStoreWriter(out_dir, dim, n_cls, dtype=dtype, class_names=class_names,
                           source=source, info=info) as writer:
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
                    class_names: Sequence[str] | None = None, progress: bool = True) -> Path:
    """Build a store from a bottom-up-attention TSV (see :func:`read_butd_tsv`).

    Returns:
        ``out_dir``.
    """
    regions = read_butd_tsv(src, fieldnames=fieldnames, num_classes=num_classes)
    return build_store(regions, out_dir, dtype=dtype, class_names=class_names,
                       source=f"bottom-up-attention TSV {Path(src).name}", progress=progress)


def import_npz_dir(src: str | Path, out_dir: str | Path, *,
                   num_classes: int = VG_OBJECT_CLASSES, load_info: bool = True,
                   dtype: str = "float16", class_names: Sequence[str] | None = None,
                   progress: bool = True) -> Path:
    """Build a store from a directory of per-image ``.npz`` files (see :func:`read_npz_dir`).

    Returns:
        ``out_dir``.
    """
    total = len(_npz_files(Path(src)))
    regions = read_npz_dir(src, num_classes=num_classes, load_info=load_info)
    return build_store(regions, out_dir, dtype=dtype, class_names=class_names,
                       source=f"per-image npz directory {Path(src).name}",
                       progress=progress, total=total)
