"""Classification scores: accuracy (SNLI-VE, NLVR2), NLVR2 consistency, VCR Q→A / QA→R / Q→AR.

Values are fractions in [0, 1], as NLVR2's official ``eval/metrics.py`` prints them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor

from vlp.errors import VlpError
from vlp.eval import as_numpy

LabelsLike = Tensor | np.ndarray | Sequence[int] | Sequence[bool] | Sequence[str]


def _pair(name: str, pred: LabelsLike, labels: LabelsLike) -> tuple[np.ndarray, np.ndarray]:
    p, y = as_numpy(pred), as_numpy(labels)
    if p.ndim != 1 or p.shape != y.shape:
        raise VlpError(f"{name}: expected predictions and labels of one same length, found "
                       f"shapes {tuple(p.shape)} and {tuple(y.shape)}")
    if p.size == 0:
        raise VlpError(f"{name}: no examples to score")
    return p, y


def accuracy(pred: LabelsLike, labels: LabelsLike) -> float:
    """The fraction of predictions equal to their label.

    Args:
        pred: ``(N,)`` predicted class indices (or labels of any comparable kind).
        labels: ``(N,)`` true labels.

    Raises:
        VlpError: the lengths differ or there are no examples.
    """
    p, y = _pair("accuracy", pred, labels)
    return float(np.mean(p == y))


def _nlvr2_group(identifier: str) -> str:
    # metrics.py blanks the pair_id field: "dev-850-0-1" → "dev-850--1"
    parts = identifier.split("-")
    if len(parts) != 4:
        raise VlpError(f"nlvr2_consistency: identifier {identifier!r} is not "
                       "'split-set_id-pair_id-sentence_id'")
    parts[2] = ""
    return "-".join(parts)


def nlvr2_consistency(identifiers: Sequence[str], correct: LabelsLike) -> float:
    """NLVR2 consistency: the fraction of sentences right on every image pair they appear with.

    As in ``nlvr2/eval/metrics.py`` of lil-lab/nlvr: an identifier is
    ``split-set_id-pair_id-sentence_id``; examples that differ only in ``pair_id`` share a
    sentence (one sentence was written for a set of 8 images and paired with several image
    pairs), so the script groups by the identifier with ``pair_id`` blanked, i.e. by
    ``(split, set_id, sentence_id)``, and counts a group consistent when all its examples
    are predicted right.

    Args:
        identifiers: ``(N,)`` example identifiers, e.g. ``dev-850-0-1``.
        correct: ``(N,)`` whether each example was predicted right.

    Raises:
        VlpError: the lengths differ, there are no examples, or an identifier is malformed.
    """
    ids, ok = _pair("nlvr2_consistency", np.asarray(identifiers, dtype=object), correct)
    groups: dict[str, bool] = {}
    for identifier, right in zip(ids, ok, strict=True):
        key = _nlvr2_group(str(identifier))
        groups[key] = groups.get(key, True) and bool(right)
    return sum(groups.values()) / len(groups)


def nlvr2_metrics(identifiers: Sequence[str], pred: LabelsLike,
                  labels: LabelsLike) -> dict[str, float]:
    """Accuracy and consistency of NLVR2 predictions, as ``eval/metrics.py`` reports them.

    Args:
        identifiers: ``(N,)`` example identifiers.
        pred: ``(N,)`` predicted truth values.
        labels: ``(N,)`` true truth values.

    Returns:
        ``{"accuracy", "consistency"}`` as fractions.
    """
    p, y = _pair("nlvr2_metrics", pred, labels)
    correct = p == y
    return {"accuracy": float(np.mean(correct)),
            "consistency": nlvr2_consistency(identifiers, correct)}


def vcr_accuracy(q2a_pred: LabelsLike, q2a_label: LabelsLike, qa2r_pred: LabelsLike,
                 qa2r_label: LabelsLike) -> dict[str, float]:
    """VCR accuracies: Q→A, QA→R, and Q→AR (right only when both answer and rationale are).

    The QA→R predictions are those made given the *right* answer, as in the VCR protocol.

    Args:
        q2a_pred: ``(N,)`` chosen answer per question (0-3).
        q2a_label: ``(N,)`` right answer.
        qa2r_pred: ``(N,)`` chosen rationale per question.
        qa2r_label: ``(N,)`` right rationale.

    Returns:
        ``{"q2a", "qa2r", "q2ar"}`` as fractions.

    Raises:
        VlpError: the four lengths differ or there are no examples.
    """
    a_pred, a_label = _pair("vcr_accuracy (q2a)", q2a_pred, q2a_label)
    r_pred, r_label = _pair("vcr_accuracy (qa2r)", qa2r_pred, qa2r_label)
    if a_pred.shape != r_pred.shape:
        raise VlpError(f"vcr_accuracy: {a_pred.shape[0]} Q→A predictions but "
                       f"{r_pred.shape[0]} QA→R predictions")
    a_ok, r_ok = a_pred == a_label, r_pred == r_label
    return {"q2a": float(np.mean(a_ok)), "qa2r": float(np.mean(r_ok)),
            "q2ar": float(np.mean(a_ok & r_ok))}
