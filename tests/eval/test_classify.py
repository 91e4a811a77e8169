"""Accuracy, NLVR2 consistency and VCR accuracies on hand-worked cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vlp.data.formats.nlvr2 import read_nlvr2
from vlp.errors import VlpError
from vlp.eval.classify import accuracy, nlvr2_consistency, nlvr2_metrics, vcr_accuracy

NLVR2_DEV = Path(__file__).resolve().parents[1] / "fixtures" / "tasks" / "nlvr2" / "dev.json"


def test_accuracy() -> None:
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    assert accuracy(torch.tensor([1, 0]), np.array([1, 1])) == 0.5
    with pytest.raises(VlpError, match="same length"):
        accuracy([0, 1], [0])
    with pytest.raises(VlpError, match="no examples"):
        accuracy([], [])


def test_nlvr2_consistency_groups_by_set_and_sentence() -> None:
    ids = ["dev-850-0-0", "dev-850-1-0", "dev-850-2-1", "dev-851-0-0"]
    # groups (pair_id blanked): dev-850--0 {right, wrong}, dev-850--1 {right},
    # dev-851--0 {right} → 2 of 3 sentences consistent
    assert nlvr2_consistency(ids, [True, False, True, True]) == pytest.approx(2 / 3)
    assert nlvr2_consistency(ids, [True, True, True, True]) == 1.0
    # sentence_id matters: the same pair with sentence 0 and 1 is two groups
    assert nlvr2_consistency(["dev-1-0-0", "dev-1-0-1"], [True, False]) == 0.5
    with pytest.raises(VlpError, match="split-set_id-pair_id-sentence_id"):
        nlvr2_consistency(["dev-850-0"], [True])


def test_nlvr2_metrics_on_the_fixture() -> None:
    records = read_nlvr2(NLVR2_DEV)
    ids = [r.identifier for r in records]
    labels = [r.label for r in records]  # True, False, True, False
    pred = [True, True, True, False]  # wrong on dev-850-1-0 only
    m = nlvr2_metrics(ids, pred, labels)
    assert m == {"accuracy": 0.75, "consistency": pytest.approx(2 / 3)}


def test_vcr_accuracy() -> None:
    r = vcr_accuracy(q2a_pred=[0, 1, 2, 3], q2a_label=[0, 1, 0, 3],
                     qa2r_pred=[1, 1, 1, 0], qa2r_label=[1, 0, 1, 0])
    # answers right: 0, 1, 3; rationales right: 0, 2, 3; both: 0, 3
    assert r == {"q2a": 0.75, "qa2r": 0.75, "q2ar": 0.5}
    with pytest.raises(VlpError, match="Q→A predictions"):
        vcr_accuracy([0, 1], [0, 1], [0], [0])
