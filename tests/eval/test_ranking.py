"""Retrieval recall on a hand-built score matrix, ties included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlp.errors import VlpError
from vlp.eval.ranking import recall_at_k, scores_from_embeddings

# 3 images × 6 texts; texts 0-1 describe image 0, 2-3 image 1, 4-5 image 2
OWNER = [0, 0, 1, 1, 2, 2]
SCORES = [
    [0.90, 0.10, 0.80, 0.20, 0.30, 0.00],  # image 0
    [0.50, 0.75, 0.70, 0.40, 0.10, 0.72],  # image 1
    [0.10, 0.90, 0.20, 0.10, 0.95, 0.30],  # image 2
]
# text → image, wrong images scoring >= the right one (by column):
#   t0: right .90, wrong .50 .10 → 0    t1: right .10, wrong .75 .90 → 2
#   t2: right .70, wrong .80 .20 → 1    t3: right .40, wrong .20 .10 → 0
#   t4: right .95, wrong .30 .10 → 0    t5: right .30, wrong .00 .72 → 1
#   R@1 = 3/6, R@2 = 5/6, R@3 = 6/6
# image → text, wrong texts scoring >= the best right text (by row):
#   image 0: best .90 (t0); wrong .80 .20 .30 .00 → 0
#   image 1: best .70 (t2); wrong .50 .75 .10 .72 → 2
#   image 2: best .95 (t4); wrong .10 .90 .20 .10 → 0
#   R@1 = 2/3, R@2 = 2/3, R@3 = 3/3


def test_hand_built_matrix() -> None:
    r = recall_at_k(np.array(SCORES), np.array(OWNER), ks=(1, 2, 3))
    expected = {"t2i_r1": 50.0, "t2i_r2": 500 / 6, "t2i_r3": 100.0,
                "i2t_r1": 200 / 3, "i2t_r2": 200 / 3, "i2t_r3": 100.0}
    for key, value in expected.items():
        assert r[key] == pytest.approx(value)
    assert r["rsum"] == pytest.approx(sum(expected.values()))
    assert r["r_mean"] == pytest.approx(sum(expected.values()) / 6)


def test_torch_inputs_and_default_ks() -> None:
    r = recall_at_k(torch.tensor(SCORES), torch.tensor(OWNER))
    assert set(r) == {"t2i_r1", "t2i_r5", "t2i_r10", "i2t_r1", "i2t_r5", "i2t_r10",
                      "r_mean", "rsum"}
    assert r["t2i_r1"] == pytest.approx(50.0)
    assert r["t2i_r5"] == r["i2t_r10"] == 100.0


def test_ties_count_against_the_query() -> None:
    # everything tied: each text has 2 wrong images level with its own, each image 4 wrong
    # texts level with its best own
    flat = np.zeros((3, 6))
    r = recall_at_k(flat, OWNER, ks=(1, 3, 5))
    assert r["t2i_r1"] == 0.0 and r["t2i_r3"] == 100.0
    assert r["i2t_r1"] == 0.0 and r["i2t_r3"] == 0.0 and r["i2t_r5"] == 100.0
    # a wrong text tied with image 0's best right text pushes it out of R@1 ...
    tied = np.array(SCORES)
    tied[0, 2] = 0.90
    assert recall_at_k(tied, OWNER, ks=(1,))["i2t_r1"] == pytest.approx(100 / 3)
    # ... but two right texts tied at the top do not hurt each other
    both = np.array(SCORES)
    both[0, 1] = 0.90
    assert recall_at_k(both, OWNER, ks=(1,))["i2t_r1"] == pytest.approx(200 / 3)


def test_bad_inputs() -> None:
    with pytest.raises(VlpError, match=r"must be \(3,\) to match scores \(6, 3\) \(num_images"):
        recall_at_k(np.array(SCORES).T, OWNER)
    with pytest.raises(VlpError, match="image 2 has no text"):
        recall_at_k(np.array(SCORES), [0, 0, 1, 1, 1, 1])
    with pytest.raises(VlpError, match="not an image index"):
        recall_at_k(np.array(SCORES), [0, 0, 1, 1, 2, 3])
    with pytest.raises(VlpError, match="NaN"):
        recall_at_k(np.full((3, 6), np.nan), OWNER)
    with pytest.raises(VlpError, match="at least 1"):
        recall_at_k(np.array(SCORES), OWNER, ks=(0,))


def test_scores_from_embeddings() -> None:
    images = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    texts = torch.tensor([[3.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    s = scores_from_embeddings(images, texts)
    assert s.shape == (2, 3)
    assert torch.allclose(s, torch.tensor([[1.0, 0.0, 2 ** -0.5], [0.0, 1.0, 2 ** -0.5]]))
    r = recall_at_k(s, [0, 1, 1], ks=(1,))
    assert r["t2i_r1"] == pytest.approx(200 / 3)  # text 2 is tied between the images
