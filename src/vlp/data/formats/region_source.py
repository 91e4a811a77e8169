"""What every region-feature source format shares: the checks an importer makes.

A published source (a BUTD TSV, a directory of ``.npz`` files) holds one image's regions per
row or file. :func:`region_problem` checks one image's arrays before they are stored,
:class:`SourceAudit` checks what must agree across a source's images (unique ids, one D, one
C) and counts boxes outside their image, and :func:`distribution_from_argmax` rebuilds a
class distribution where the source kept only the argmax class and its confidence.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from vlp.data.features import INT64_MAX, Regions
from vlp.errors import data_warning

VG_OBJECT_CLASSES = 1600  # the Visual Genome Faster R-CNN of bottom-up attention


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


class SourceFields(NamedTuple):
    """A source's names for the image id and the three region fields (for messages)."""

    image_id: str | None
    features: str
    boxes: str
    classes: str


BOX_SLACK = 1.0  # pixels: detectors clip boxes to [0, w - 1] or [0, w]
MAX_EXAMPLES = 3


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:200] or type(err).__name__


def region_problem(features: np.ndarray, boxes: np.ndarray, cls_probs: np.ndarray,
                   fields: SourceFields) -> tuple[str, str] | None:
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


class SourceAudit:
    """What a reader checks across one source's images: unique ids, one D and one C, and
    boxes inside their image (legal but suspicious: counted, and reported once by
    :meth:`finish` as a data warning with the first examples)."""

    def __init__(self, id_hint: str = "") -> None:
        self._id_hint = id_hint
        self._ids: dict[int, str] = {}
        self._dims: tuple[int, int, str] | None = None
        self._boxes = self._outside = self._inverted = 0
        self._examples: list[str] = []

    def check(self, r: Regions, origin: str, fields: SourceFields) -> tuple[str | None, str] | None:
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
        for k in np.flatnonzero(inverted | outside)[:MAX_EXAMPLES - len(self._examples)]:
            x1, y1, x2, y2 = b[k].tolist()
            self._examples.append(f"image {r.image_id} region {k}: ({x1:g}, {y1:g}, {x2:g}, "
                                  f"{y2:g}) in {r.width}×{r.height}")

    def finish(self, path: Path, field: str) -> None:
        """One data warning for the whole source if any box was outside or inverted."""
        if self._outside or self._inverted:
            data_warning(path, field, f"{self._outside} of {self._boxes} boxes lie outside "
                         f"their image and {self._inverted} are inverted (x2 < x1 or "
                         f"y2 < y1); first: {'; '.join(self._examples)}")
