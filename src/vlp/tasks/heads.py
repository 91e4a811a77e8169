"""Task heads: objectives on the encoder's pooled pair, its region states, or row groups."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp.data.batch import Batch
from vlp.layers import packing
from vlp.models.outputs import VLOutput
from vlp.objectives.base import Objective, ObjectiveOutput, fp32_logits


def mlp_head(dim: int, num_outputs: int, eps: float = 1e-12) -> nn.Sequential:
    """UNITER's task head: Linear(D, 2D) → GELU → LayerNorm → Linear(2D, outputs)."""
    return nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.LayerNorm(2 * dim, eps=eps),
                         nn.Linear(2 * dim, num_outputs))


class PairClassifier(Objective[VLOutput]):
    """Classifies the pooled pair: one label per row (cross-entropy) or soft scores over
    a label set (binary cross-entropy, VQA).

    Args:
        dim: width of ``VLOutput.pooled``.
        num_outputs: classes or answers.
        soft: targets are (B, C) soft scores (VQA) instead of (B,) class ids.
    """

    def __init__(self, dim: int, num_outputs: int, soft: bool = False) -> None:
        super().__init__()
        self.head = mlp_head(dim, num_outputs)
        self.soft = soft

    def scores(self, output: VLOutput, batch: Batch) -> Tensor:
        """(B, C) logits."""
        return fp32_logits(self.head, output.pooled)

    def forward(self, output: VLOutput, batch: Batch) -> ObjectiveOutput:
        """Loss and (for soft targets: summed target score of the argmax) correct count."""
        if batch.targets is None:
            raise ValueError("a task head needs batch.targets")
        logits = self.scores(output, batch)
        pick = logits.argmax(1)
        rows = torch.arange(logits.shape[0], device=logits.device)
        if self.soft:
            # UNITER: mean BCE over answers, times the number of answers
            loss = F.binary_cross_entropy_with_logits(logits, batch.targets) * logits.shape[1]
            correct = batch.targets[rows, pick].sum()
        else:
            loss = F.cross_entropy(logits, batch.targets)
            correct = (pick == batch.targets).sum()
        count = logits.shape[0]
        return ObjectiveOutput(loss, correct.detach(), count)


def group_count(batch: Batch, rows: int, group_size: int) -> int:
    """Number of groups in a batch whose rows come in consecutive groups of ``group_size``
    (NLVR2's two images, VCR's four options); checks ``batch.group_ids`` agrees."""
    if rows % group_size:
        raise ValueError(f"a grouped head needs rows in groups of {group_size}, got {rows} rows")
    groups = rows // group_size
    if batch.group_ids is None:
        return groups
    if batch.group_ids.shape != (rows,):
        raise ValueError(f"batch.group_ids has shape {tuple(batch.group_ids.shape)}, the "
                         f"head scored {rows} rows")
    runs = batch.counts.get("group_runs")  # read on the host before the batch moved
    if runs is not None and not packing.reads_free(batch.group_ids):
        consecutive = runs % group_size == 0
    else:  # on the CPU reading the ids costs nothing
        ids = batch.group_ids.view(groups, group_size)  # (G, K)
        consecutive = bool((ids == ids[:, :1]).all())
    if not consecutive:
        raise ValueError(f"a grouped head needs each group's {group_size} rows "
                         "consecutive in the batch (see batch.group_ids)")
    return groups


def _group_loss(logits: Tensor, batch: Batch) -> ObjectiveOutput:
    """Cross-entropy of (G, C) group logits against ``batch.targets`` (G,), with accuracy."""
    if batch.targets is None:
        raise ValueError("a task head needs batch.targets")
    loss = F.cross_entropy(logits, batch.targets)
    correct = (logits.argmax(1) == batch.targets).sum()
    count = logits.shape[0]
    return ObjectiveOutput(loss, correct.detach(), count)


class PairGroupClassifier(Objective[VLOutput]):
    """NLVR2's head (UNITER's "pair" setting): the pooled vectors of a group's rows (the
    statement with the left image, then with the right) are concatenated and classified.

    ``batch.targets`` holds one class id per group (G,); :meth:`scores` gives one row of
    logits per group, so prediction sees one output per record.

    Args:
        dim: width of ``VLOutput.pooled``.
        num_outputs: classes (NLVR2: False, True).
        group_size: rows per group (NLVR2: 2 images).
    """

    def __init__(self, dim: int, num_outputs: int = 2, group_size: int = 2) -> None:
        super().__init__()
        self.group_size = group_size
        self.head = mlp_head(group_size * dim, num_outputs)

    def scores(self, output: VLOutput, batch: Batch) -> Tensor:
        """(G, C) logits, one row per group."""
        pooled = output.pooled  # (G * K, D)
        groups = group_count(batch, pooled.shape[0], self.group_size)
        pairs = pooled.reshape(groups, self.group_size * pooled.shape[1])  # (G, K * D)
        return fp32_logits(self.head, pairs)

    def forward(self, output: VLOutput, batch: Batch) -> ObjectiveOutput:
        """Cross-entropy per group and the number of groups classified right."""
        return _group_loss(self.scores(output, batch), batch)


class ChoiceScorer(Objective[VLOutput]):
    """VCR's head: each row (question with one option) gets a score from its pooled
    vector; a group's scores are the logits of a softmax over its options.

    ``batch.targets`` holds the right option of each group (G,); :meth:`scores` gives the
    (G, K) option scores.

    Args:
        dim: width of ``VLOutput.pooled``.
        group_size: options per group (VCR: 4).
    """

    def __init__(self, dim: int, group_size: int = 4) -> None:
        super().__init__()
        self.group_size = group_size
        self.head = mlp_head(dim, 1)

    def scores(self, output: VLOutput, batch: Batch) -> Tensor:
        """(G, K) option scores, one row per group."""
        per_row = fp32_logits(self.head, output.pooled).squeeze(-1)  # (G * K,)
        groups = group_count(batch, per_row.shape[0], self.group_size)
        return per_row.view(groups, self.group_size)  # (G, K)

    def forward(self, output: VLOutput, batch: Batch) -> ObjectiveOutput:
        """Cross-entropy over each group's options and the number of groups right."""
        return _group_loss(self.scores(output, batch), batch)


class RegionScorer(Objective[VLOutput]):
    """Referring expressions (UNITER / VILLA): one logit per visual token of
    ``VLOutput.image``; padded regions get -inf.

    ``batch.targets`` is (B, R): 1 on regions that overlap the referred object's box at
    IoU ≥ 0.5, else 0. The loss is the cross-entropy of the softmax over a row's regions
    against its target normalised to sum 1 (a soft target when several regions qualify);
    rows with no such region cannot be learned from and are left out of the loss (they
    still count as wrong in ``correct``).

    Args:
        dim: width of ``VLOutput.image`` (``ModelConfig.image_width``).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.head = mlp_head(dim, 1)

    def scores(self, output: VLOutput, batch: Batch) -> Tensor:
        """(B, R) region logits, -inf on padding."""
        logits = fp32_logits(self.head, output.image).squeeze(-1)  # (B, R)
        return logits.masked_fill(~output.image_mask, float("-inf"))

    def forward(self, output: VLOutput, batch: Batch) -> ObjectiveOutput:
        """Soft-target cross-entropy over regions and the number of rows whose top
        region is a positive."""
        targets = batch.targets
        if targets is None:
            raise ValueError("a task head needs batch.targets")
        logits = self.scores(output, batch)
        if targets.shape != logits.shape:
            raise ValueError(f"region targets of shape {tuple(targets.shape)} do not match "
                             f"the model's visual tokens {tuple(logits.shape)}")
        rows = torch.arange(logits.shape[0], device=logits.device)
        correct = (targets[rows, logits.argmax(1)] > 0).sum()
        count = logits.shape[0]
        mass = targets.sum(1)  # (B,)
        learnable = (mass > 0).to(logits.dtype)  # rows with a positive region
        log_p = F.log_softmax(logits, dim=1).masked_fill(~output.image_mask, 0.0)  # no 0·-inf
        target = targets / mass.clamp(min=1e-12)[:, None]  # (B, R), a learnable row sums to 1
        # the mean over learnable rows, as a weighted sum: the host never reads which they are
        loss = -(target * log_p).sum(1).sum() / learnable.sum().clamp(min=1.0)
        return ObjectiveOutput(loss, correct.detach(), count)
