"""Directories of per-image ``.npz`` files (py-bottom-up-attention, VisualBERT, simple
``features``/``boxes`` files) as region features.

:func:`read_npz_dir` turns the files into :class:`~vlp.data.features.Regions` without ever
letting numpy unpickle (``info`` goes through :mod:`vlp.safe_pickle`), and
:func:`import_npz_dir` writes them to a new :class:`~vlp.data.features.RegionStore`. A bad file
is one :class:`~vlp.errors.VlpError` line naming the file and the key.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlp.data.features import (
    Regions,
    build_store,
    claim_store,
    is_positive_int,
    npy_size_problem,
    parse_image_id,
    read_npy_header,
)
from vlp.data.formats.region_source import (
    VG_OBJECT_CLASSES,
    SourceAudit,
    SourceFields,
    distribution_from_argmax,
    one_line,
    region_problem,
)
from vlp.errors import input_error
from vlp.safe_pickle import safe_load

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
            dtype, shape, fortran = read_npy_header(f)
        except (ValueError, EOFError) as err:
            raise input_error(path, key, f"not a readable .npy array ({one_line(err)})") from None
        if dtype.hasobject:
            if pickled:
                return safe_load(f, f"{path}: field '{key}'")
            raise input_error(path, key, "holds pickled Python objects, which are not loaded; "
                              "expected a numeric array")
        problem = npy_size_problem(dtype, shape, f.tell(), member.file_size)
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
                          f"({one_line(err)})") from None
    return arrays, any(m.filename == "info.npy" for m in members)


def _npz_info(path: Path) -> dict[Any, Any]:
    """py-bottom-up-attention's ``info`` dict, stored as a pickled object array: loaded
    with :func:`vlp.safe_pickle.safe_load`, which refuses anything but plain data and
    numpy arrays before any of it runs."""
    try:
        with zipfile.ZipFile(path) as zf:
            info = _npz_member(path, zf, zf.getinfo("info.npy"), pickled=True)
    except _NPZ_READ_ERRORS as err:
        raise input_error(path, "info", f"unreadable ({one_line(err)})") from None
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
        raise input_error(path, field, f"expected a numeric array ({one_line(err)})") from None
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise input_error(path, field, f"expected a numeric array, got dtype {arr.dtype}")
    return arr


def _npz_scalar(path: Path, data: Mapping[str, Any], keys: Sequence[str]) -> int:
    for key in keys:
        if key in data:
            arr = _numeric(path, key, data[key])
            value = arr.reshape(-1)[0].item() if arr.size == 1 else None
            if value is None or not is_positive_int(value):
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
                load_info: bool) -> tuple[dict[str, Any], np.ndarray, np.ndarray, SourceFields]:
    """The file's data (with ``info`` merged in), features, boxes and field names."""
    if "x" in arrays:  # py-bottom-up-attention / VisualBERT convention
        data = {**_npz_info(path), **arrays} if has_info and load_info else arrays
        boxes = _numeric(path, "bbox", _required(path, data, "bbox"))
        n = _npz_scalar(path, data, ("num_bbox",)) if "num_bbox" in data else \
            (boxes.shape[0] if boxes.ndim else 0)
        features = _npz_features(path, _numeric(path, "x", data["x"]), n)
        return data, features, boxes, SourceFields(None, "x", "bbox", "cls_prob")
    if "features" in arrays:
        features = _numeric(path, "features", arrays["features"])
        boxes = _numeric(path, "boxes", _required(path, arrays, "boxes"))
        return arrays, features, boxes, SourceFields(None, "features", "boxes", "cls_prob")
    raise input_error(path, "features", f"missing (expected 'x' or 'features'; "
                      f"the file has {sorted(arrays)})")


def _npz_regions(path: Path, num_classes: int, load_info: bool,
                 parse_id: Callable[[str], int]) -> tuple[Regions, SourceFields]:
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
    problem = region_problem(features, boxes, cls_probs, fields)
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
    audit = SourceAudit(" (the id is the file name's trailing digits; rename one file "
                        "or pass parse_id=)")
    fields = SourceFields(None, "x", "bbox", "cls_prob")
    for path in _npz_files(root):
        try:
            regions, fields = _npz_regions(path, num_classes, load_info, parse_id)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise input_error(path, None, f"not a readable .npz file ({one_line(err)})") \
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
