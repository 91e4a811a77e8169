"""A pre-training step of vlp against Hugging Face transformers: same weights, batches, precision.

Two model families, each a random Hugging Face model saved with ``save_pretrained`` and
imported into vlp with ``vlp.convert.load_imported``, so both libraries hold the
same weights:

- VisualBERT: ``VisualBertForPreTraining`` (MLM + sentence-image matching) against vlp's
  single-stream model with ``region_embed: visualbert`` and the ``mlm`` + ``itm`` objectives;
- LXMERT: ``LxmertForPreTraining`` without its QA and attribute heads (MLM, matching, object
  label and feature regression) against vlp's two-stream model with ``mlm``, ``itm``,
  ``mrc`` and ``mrfr``, as the import maps LXMERT's heads.

A step is forward, backward and an AdamW step (vlp's ``make_optimizer`` for both), in train
mode (dropout on), in fp32 and in bf16 autocast. Pairs have real caption lengths (the COCO
Karpathy test captions, BERT WordPiece) and 10..100 random regions per image; ITM negatives
take another image of the pool with the positive's region count, as vlp's trainer does.
Hugging Face gets fixed-size batches padded to their longest caption and most regions; vlp
gets the same batches, and also its own length-bucketed token-budget batches with the same
mean batch size. All settings are
timed step by step in turn (A B C …, then … C B A) in one process; medians of rounds.
One torch thread by default: on a machine shared with other jobs, a second OpenMP thread
waits at every barrier for the first to get a core back, and step times then measure that.

Before timing, the two models' losses on the first batch are compared in fp32.

Sizes default to base (768 wide, 12 heads, 3072 MLP; VisualBERT 12 layers, LXMERT 9/5/5),
where people train and import; at base size one fp32 step of 16 pairs takes tens of
seconds on one CPU thread.

``--device cuda`` runs both on a GPU (each step timed between two synchronisations) and adds
MFU: useful FLOP/s against the GPU's own measured peak, the best of large square matrix
products in the precision (``--peak-size``).

Usage: ``.venv/bin/python benchmarks/vs_hf.py [--models visualbert lxmert] [--steps 4]
[--device cuda]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from _common import KARPATHY_TEST, RESULTS, format_table, load_captions, ratio, write_results
from padding import epoch_batches, match_budget
from vlp.convert import load_imported, resolve_source
from vlp.data.batch import IGNORE_INDEX, Batch
from vlp.data.batching import fixed_size_batches, token_budget_batches
from vlp.data.features import Regions
from vlp.data.pretrain import BatchPlan, Example, ImagePool, PretrainCollator
from vlp.data.tokenizer import Tokenizer
from vlp.data.visuals import RegionSource
from vlp.errors import VlpError
from vlp.models import build_model
from vlp.models.weights import load_partial
from vlp.objectives import LossModel, build_objectives
from vlp.train.config import DataConfig
from vlp.train.runtime import autocast, make_optimizer

try:
    import transformers
    from transformers import (
        LxmertConfig,
        LxmertForPreTraining,
        VisualBertConfig,
        VisualBertForPreTraining,
    )
except ImportError as e:  # a dev dependency only
    raise SystemExit(f"vs_hf.py needs transformers ({e}); pip install -e '.[dev]'") from e

PRECISIONS = ["fp32", "bf16"]
SETTINGS = ["hf", "vlp", "vlp_bucketed"]  # columns: library and batching
LOSS_TOL = 1e-3


# --------------------------------------------------------------------------- data


@dataclass
class Corpus:
    """The benchmark's pairs: caption token ids, each pair's image, each image's regions."""

    token_ids: list[list[int]]
    image_ids: np.ndarray  # (N,) image of each pair
    region_counts: np.ndarray  # (N_images,) regions of each image, by image id
    description: str

    @property
    def lengths(self) -> np.ndarray:
        """(N, 2) text tokens and own-image regions per pair, as the batch sampler sees them."""
        text = np.array([len(t) for t in self.token_ids], dtype=np.int64)
        return np.stack([text, self.region_counts[self.image_ids]], axis=1)


class RandomRegions:
    """A stand-in region store: each image's detector-like regions, drawn from its id alone.

    It has what a :class:`~vlp.data.visuals.RegionSource` reads (``get``, ``region_counts``,
    ``root``), so the same image has the same regions whether it comes as a pair's own
    image or as an ITM negative.
    """

    root = "random regions"

    def __init__(self, counts: np.ndarray, feature_dim: int, num_classes: int,
                 seed: int) -> None:
        self.counts = counts
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.seed = seed

    def region_counts(self) -> dict[int, int]:
        """Regions per image id."""
        return {i: int(n) for i, n in enumerate(self.counts)}

    def get(self, image_id: int) -> Regions:
        """Non-negative features, boxes in 640×480, softmax class distributions."""
        rng = np.random.default_rng([self.seed, image_id])
        n = int(self.counts[image_id])
        features = np.abs(rng.standard_normal((n, self.feature_dim), dtype=np.float32))
        xy = rng.random((n, 2), dtype=np.float32) * np.float32([560, 400])
        wh = 16 + rng.random((n, 2), dtype=np.float32) * np.float32([80, 80])
        logits = 3 * rng.standard_normal((n, self.num_classes), dtype=np.float32)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        return Regions(image_id, 640, 480, features, np.concatenate([xy, xy + wh], axis=1),
                       probs / probs.sum(axis=1, keepdims=True))


def load_corpus(args: argparse.Namespace, tokenizer: Tokenizer) -> Corpus:
    """``--pool`` random captions, and one uniform region count per image."""
    per_image = load_captions(args.captions)
    texts = [c for caps in per_image for c in caps]
    owner = np.repeat(np.arange(len(per_image)), [len(caps) for caps in per_image])
    rng = np.random.default_rng(args.seed)
    counts = rng.integers(args.min_regions, args.max_regions + 1, size=len(per_image))
    chosen = np.sort(rng.choice(len(texts), size=min(args.pool, len(texts)), replace=False))
    token_ids = tokenizer.encode([texts[i] for i in chosen], args.max_text_len)
    desc = (f"{len(chosen):,} of the {len(texts):,} captions of {args.captions.name} "
            f"(WordPiece, {args.vocab_label}, ≤{args.max_text_len} tokens), "
            f"{args.min_regions}..{args.max_regions} random regions per image")
    return Corpus(token_ids, owner[chosen], counts.astype(np.int64), desc)


def collate(corpus: Corpus, collator: PretrainCollator, store: RandomRegions,
            indices: list[int], plan: BatchPlan, seed: int) -> Batch:
    """The batch of pairs ``indices``, drawn from ``seed`` (negatives from the collator's pool)."""
    examples = [Example(int(corpus.image_ids[i]), corpus.token_ids[i]) for i in indices]
    return collator(examples, plan, seed)


def collator_for(tokenizer: Tokenizer, corpus: Corpus, store: RandomRegions, loc_dim: int,
                 args: argparse.Namespace) -> PretrainCollator:
    """vlp's pre-training collator; ITM negatives from the whole pool, of their positive's
    region count (as the trainer draws them), or, with ``--negatives batch``, from the
    batch itself."""
    counts = {int(i): int(corpus.region_counts[i]) for i in np.unique(corpus.image_ids)}
    pool = ImagePool(list(counts), counts) if args.negatives == "pool" else None
    source = RegionSource(store, args.max_regions, loc_dim)  # type: ignore[arg-type]  # duck-typed
    return PretrainCollator(tokenizer, source, negative_pool=pool)


@dataclass
class Timed:
    """One batching's timed batches: dataset indices, seeds, shapes, and epoch figures."""

    name: str
    indices: list[list[int]]
    seeds: list[int]
    shapes: list[tuple[int, int, int]]  # (B, L_max, R_max) after ITM negatives
    epoch: dict[str, float] = field(default_factory=dict)


def choose_batches(name: str, batches: list[list[int]], corpus: Corpus, tokenizer: Tokenizer,
                   args: argparse.Namespace) -> Timed:
    """``--batches`` of an epoch's batches, at evenly spaced quantiles of padded positions
    per pair (L_max + R_max, ITM negatives' regions included).

    The shapes of the whole epoch come from collating it with 1-d features: the collator's
    draws depend on the shapes alone, so the full-size batches come out the same.
    """
    tiny = RandomRegions(corpus.region_counts, 1, 1, args.seed)
    collator = collator_for(tokenizer, corpus, tiny, 4, args)
    seeds = [args.seed + k for k in range(len(batches))]
    shapes = []
    for indices, seed in zip(batches, seeds, strict=True):
        b = collate(corpus, collator, tiny, indices, BatchPlan(pairs=True), seed)
        assert b.region_feats is not None
        shapes.append((b.size, b.input_ids.shape[1], b.region_feats.shape[1]))
    per_pair = np.array([l_max + r_max for _, l_max, r_max in shapes])
    order = np.argsort(per_pair, kind="stable")
    picks = [int(order[int((q + 0.5) * len(order) / args.batches)]) for q in range(args.batches)]
    own = corpus.lengths
    epoch = {"batches": len(batches), "mean_batch_size": float(np.mean([s[0] for s in shapes])),
             "positions_per_pair": sum(b * (x + y) for b, x, y in shapes) / len(own),
             "planned_positions_per_pair": sum(len(i) * int(own[i].max(axis=0).sum())
                                               for i in batches) / len(own),
             "real_positions_per_pair": float(own.sum(axis=1).mean())}
    return Timed(name, [batches[p] for p in picks], [seeds[p] for p in picks],
                 [shapes[p] for p in picks], epoch)


def timed_batches(corpus: Corpus, tokenizer: Tokenizer, args: argparse.Namespace
                  ) -> tuple[Timed, Timed, int]:
    """The fixed-size and the bucketed batches to time, and the matched token budget."""
    n = len(corpus.token_ids)
    fixed = epoch_batches(n, fixed_size_batches(args.batch_size), args.seed)
    budget = match_budget(corpus.lengths, len(fixed), args.bucket_size, args.seed)
    bucketed = epoch_batches(n, token_budget_batches(corpus.lengths, budget, args.bucket_size),
                             args.seed)
    return (choose_batches("fixed", fixed, corpus, tokenizer, args),
            choose_batches("bucketed", bucketed, corpus, tokenizer, args), budget)


def describe(t: Timed) -> str:
    """One line on a batching: the timed batches and the epoch they stand for."""
    shapes = ", ".join(f"{b}×({x}+{y})" for b, x, y in t.shapes)
    timed = sum(b * (x + y) for b, x, y in t.shapes) / sum(b for b, _, _ in t.shapes)
    e = t.epoch
    return (f"{t.name}: B×(L+R) {shapes}; {timed:.0f} positions per pair (epoch: "
            f"{e['batches']:.0f} batches of {e['mean_batch_size']:.1f} pairs, "
            f"{e['positions_per_pair']:.0f} per pair, {e['planned_positions_per_pair']:.0f} "
            f"before ITM negatives, {e['real_positions_per_pair']:.0f} real)")


# --------------------------------------------------------------------------- models


@dataclass
class Family:
    """One Hugging Face model and the vlp model imported from it (same weights)."""

    name: str
    hf: nn.Module
    vlp: LossModel
    objectives: list[str]
    plan: BatchPlan
    loc_dim: int
    hf_inputs: Callable[[nn.Module, Batch], dict[str, Any]]
    hf_terms: Callable[[nn.Module, Batch], dict[str, Tensor]]
    notes: list[str]
    description: str


def perturbed(model: nn.Module, seed: int) -> nn.Module:
    """Move every weight off its initial value (biases off 0, LayerNorms off (1, 0)), so a
    wrong mapping in the import would show in the loss check."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.1 if "LayerNorm" in name or "layer_norm" in name else 0.02
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model


def import_into_vlp(path: Path, names: list[str]) -> LossModel:
    """``load_imported`` → ``build_model`` → objectives with the imported heads."""
    imported = load_imported(path)
    model = build_model(imported.config)
    model.load_state_dict(imported.model)  # strict: the import covers the whole encoder
    objectives = build_objectives(names, imported.config, model)
    for name in names:
        left = load_partial(objectives[name], imported.heads[name], f"{path} ({name})")
        if left != (["head.decoder.weight"] if name == "mlm" else []):  # decoder: tied
            raise RuntimeError(f"{name}: the import left {left} at their initial values")
    return LossModel(model, objectives)


def visualbert_inputs(hf: nn.Module, batch: Batch) -> dict[str, Any]:
    """A vlp batch as ``VisualBertForPreTraining`` takes it."""
    assert batch.region_feats is not None and batch.region_mask is not None
    assert batch.mlm_labels is not None and batch.itm_labels is not None
    regions = torch.full(batch.region_mask.shape, IGNORE_INDEX, dtype=torch.long)
    return {"input_ids": batch.input_ids, "attention_mask": batch.text_mask.long(),
            "visual_embeds": batch.region_feats,
            "visual_attention_mask": batch.region_mask.long(),
            "labels": torch.cat([batch.mlm_labels, regions], dim=1),  # (B, L + R)
            "sentence_image_labels": 1 - batch.itm_labels}  # VisualBERT: 0 = matches


def visualbert_terms(hf: nn.Module, batch: Batch) -> dict[str, Tensor]:
    """HF's loss terms, each from its own forward (its total is their sum)."""
    inputs = visualbert_inputs(hf, batch)
    total = hf(**inputs).loss
    mlm = hf(**{k: v for k, v in inputs.items() if k != "sentence_image_labels"}).loss
    return {"mlm": mlm, "itm": total - mlm, "total": total}


def lxmert_inputs(hf: nn.Module, batch: Batch) -> dict[str, Any]:
    """A vlp batch as ``LxmertForPreTraining`` takes it.

    Its visual losses are ``Σ conf · loss / (B·R) × visual_loss_normalizer`` over every
    region; ``conf`` is chosen so that this is the mean over the masked regions, as vlp's.
    """
    assert batch.region_mask is not None and batch.region_masked is not None
    assert batch.region_cls is not None and batch.region_targets is not None
    b, r = batch.region_mask.shape
    masked = (batch.region_masked & batch.region_mask).float()  # (B, R)
    conf = masked * (b * r) / masked.sum().clamp(min=1) / hf.config.visual_loss_normalizer
    return {"input_ids": batch.input_ids, "attention_mask": batch.text_mask.long(),
            "visual_feats": batch.region_feats, "visual_pos": batch.region_loc,
            "visual_attention_mask": batch.region_mask.long(), "labels": batch.mlm_labels,
            "matched_label": batch.itm_labels,  # LXMERT: 1 = matches, as vlp
            "obj_labels": {"obj": (batch.region_cls.argmax(-1), conf),
                           "feat": (batch.region_targets, conf)}}


def lxmert_terms(hf: nn.Module, batch: Batch) -> dict[str, Tensor]:
    """HF's loss terms, each from a forward given only its labels (or its ``conf``)."""
    inputs = lxmert_inputs(hf, batch)
    base = {k: v for k, v in inputs.items() if k not in ("labels", "matched_label", "obj_labels")}
    (cls, conf), (feat, _) = inputs["obj_labels"]["obj"], inputs["obj_labels"]["feat"]
    zero = torch.zeros_like(conf)
    return {"mlm": hf(**base, labels=inputs["labels"]).loss,
            "itm": hf(**base, matched_label=inputs["matched_label"]).loss,
            "mrc": hf(**base, obj_labels={"obj": (cls, conf), "feat": (feat, zero)}).loss,
            "mrfr": hf(**base, obj_labels={"obj": (cls, zero), "feat": (feat, conf)}).loss,
            "total": hf(**inputs).loss}


VISUALBERT_NOTES = [
    "mlm: HF projects every text and region position to the vocabulary (labels are (B, L+R), "
    "-100 on regions) and averages over the labelled ones; vlp projects only the labelled "
    "positions: the same value",
    "itm: VisualBERT's sentence_image_labels say 0 = matches, vlp's itm_labels 1 = matches; "
    "the import swaps the two rows of the head, and HF is given 1 - itm_labels",
]
LXMERT_NOTES = [
    "mlm: HF projects every text position to the vocabulary, vlp only the labelled ones: "
    "the same value",
    "mrc: HF's object loss is Σ conf·CE / (B·R) × visual_loss_normalizer over all regions; "
    "conf = masked · B·R / (N_masked · normalizer) makes it the mean over masked regions",
    "mrfr: HF regresses features with smooth-L1 (β = 1), vlp with MSE: the check compares "
    "HF's term with smooth-L1 on vlp's MRFR predictions (column 'vlp, HF's definition'); "
    "each library keeps its own loss when timed (elementwise, a negligible cost)",
    "HF computes its visual heads (transform, 1600 classes, 2048 features) on every region, "
    "vlp only on masked ones; vlp's mrc and mrfr heads each carry a copy of LXMERT's shared "
    "transform (run on the masked regions only)",
]


def build_visualbert(args: argparse.Namespace, vocab_size: int, tmp: Path) -> Family:
    """A random ``VisualBertForPreTraining`` and its vlp import."""
    cfg = VisualBertConfig(vocab_size=vocab_size, hidden_size=args.hidden_size,
                           num_hidden_layers=args.layers, num_attention_heads=args.num_heads,
                           intermediate_size=args.intermediate_size,
                           visual_embedding_dim=args.feature_dim)
    torch.manual_seed(args.seed)
    hf = perturbed(VisualBertForPreTraining(cfg), args.seed)
    hf.save_pretrained(tmp / "visualbert")
    desc = (f"HF VisualBertForPreTraining vs vlp single_stream (region_embed visualbert): "
            f"{args.hidden_size} hidden, {args.layers} layers, {args.num_heads} heads, "
            f"{args.intermediate_size} MLP, V = {vocab_size}, F = {args.feature_dim}")
    return Family("visualbert", hf, import_into_vlp(tmp / "visualbert", ["mlm", "itm"]),
                  ["mlm", "itm"], BatchPlan(mask_text=True, pairs=True), 7,
                  visualbert_inputs, visualbert_terms, VISUALBERT_NOTES, desc)


def build_lxmert(args: argparse.Namespace, vocab_size: int, tmp: Path) -> Family:
    """A random ``LxmertForPreTraining`` (no QA, no attribute head) and its vlp import."""
    l_layers, r_layers, x_layers = args.lxmert_layers
    cfg = LxmertConfig(vocab_size=vocab_size, hidden_size=args.hidden_size,
                       num_attention_heads=args.num_heads,
                       intermediate_size=args.intermediate_size, l_layers=l_layers,
                       r_layers=r_layers, x_layers=x_layers, visual_feat_dim=args.feature_dim,
                       visual_pos_dim=4, num_object_labels=args.num_classes, task_qa=False,
                       visual_attr_loss=False)
    torch.manual_seed(args.seed)
    hf = perturbed(LxmertForPreTraining(cfg), args.seed)
    hf.save_pretrained(tmp / "lxmert")
    names = ["mlm", "itm", "mrc", "mrfr"]
    desc = (f"HF LxmertForPreTraining vs vlp two_stream (cross_block lxmert): "
            f"{args.hidden_size} hidden, L/R/X = {l_layers}/{r_layers}/{x_layers} layers, "
            f"{args.num_heads} heads, {args.intermediate_size} MLP, V = {vocab_size}, "
            f"F = {args.feature_dim}, {args.num_classes} object classes")
    return Family("lxmert", hf, import_into_vlp(tmp / "lxmert", names), names,
                  BatchPlan(mask_text=True, mask_image=True, pairs=True), 4,
                  lxmert_inputs, lxmert_terms, LXMERT_NOTES, desc)


BUILDERS: dict[str, Callable[[argparse.Namespace, int, Path], Family]] = {
    "visualbert": build_visualbert,
    "lxmert": build_lxmert,
}


# --------------------------------------------------------------------------- loss check


def smooth_l1_mrfr(pm: LossModel, batch: Batch) -> Tensor:
    """vlp's MRFR predictions under LXMERT's feature loss (smooth-L1 on masked regions)."""
    assert batch.region_masked is not None and batch.region_targets is not None
    out = pm.encoder(batch)
    where = batch.region_masked & out.image_mask  # (B, R)
    pred = pm.objectives["mrfr"].head(out.image[where]).float()  # (N, F)
    return F.smooth_l1_loss(pred, batch.region_targets[where].float())


def check_losses(fam: Family, batch: Batch) -> dict[str, Any]:
    """Both models' losses on ``batch`` in fp32, eval mode (dropout off), per term."""
    fam.hf.eval()
    fam.vlp.eval()
    with torch.no_grad():
        theirs = {k: float(v) for k, v in fam.hf_terms(fam.hf, batch).items()}
        out = fam.vlp(batch, fam.objectives)
        ours = {k: float(v) for k, v in out.losses.items()}
        ours["total"] = float(out.loss)
        as_hf = dict(ours)
        if "mrfr" in ours:
            as_hf["mrfr"] = float(smooth_l1_mrfr(fam.vlp, batch))
            as_hf["total"] = ours["total"] - ours["mrfr"] + as_hf["mrfr"]
    diff = {k: abs(theirs[k] - as_hf[k]) for k in theirs}
    return {"hf": theirs, "vlp": ours, "vlp_hf_definition": as_hf, "abs_diff": diff,
            "tolerance": LOSS_TOL, "equal": max(diff.values()) <= LOSS_TOL,
            "batch": [*batch.input_ids.shape, batch.region_feats.shape[1]
                      if batch.region_feats is not None else 0],
            "notes": fam.notes}


def print_check(fam: Family, check: dict[str, Any]) -> None:
    """The per-term loss table and what differs in the definitions."""
    b, n_text, n_regions = check["batch"]
    verdict = "equal" if check["equal"] else "NOT EQUAL"
    print(f"\n-- loss check, {fam.name}: first fixed batch {b}×({n_text}+{n_regions}), fp32, "
          f"eval mode: {verdict} (tolerance {LOSS_TOL:g})")
    rows = [[k, f"{check['hf'][k]:.6f}", f"{check['vlp'][k]:.6f}",
             f"{check['vlp_hf_definition'][k]:.6f}", f"{check['abs_diff'][k]:.1e}"]
            for k in check["hf"]]
    print(format_table(["term", "HF", "vlp", "vlp, HF's definition", "|diff|"], rows))
    for note in check["notes"]:
        print(f"   - {note}")


# --------------------------------------------------------------------------- timing


@dataclass
class Runner:
    """One cell of the table: a setting in a precision, stepping through its batches."""

    setting: str
    precision: str
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    forward: Callable[[int], Tensor]  # batch number → loss
    sizes: list[int]

    @property
    def key(self) -> str:
        """``setting/precision``."""
        return f"{self.setting}/{self.precision}"

    def step(self, j: int) -> float:
        """Forward, backward and AdamW on batch ``j``; its seconds (on a GPU, from an idle
        device to the step's last kernel)."""
        synchronize(self.device)
        start = time.perf_counter()
        with autocast(self.device, self.precision):
            loss = self.forward(j)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        synchronize(self.device)
        seconds = time.perf_counter() - start
        if not bool(torch.isfinite(loss)):
            print(f"warning: {self.key}: non-finite loss {float(loss)} on batch {j}")
        return seconds


def synchronize(device: torch.device) -> None:
    """Wait for ``device`` to finish what it was given (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_runners(fam: Family, fixed: list[Batch], bucketed: list[Batch],
                 precisions: list[str], device: torch.device) -> list[Runner]:
    """HF on the fixed batches, vlp on the same and on its bucketed ones, per precision."""
    hf_inputs = [fam.hf_inputs(fam.hf, b) for b in fixed]  # built once, outside the timing
    hf_opt = make_optimizer(fam.hf, lr=1e-4, weight_decay=0.01, betas=[0.9, 0.98])
    vlp_opt = make_optimizer(fam.vlp, lr=1e-4, weight_decay=0.01, betas=[0.9, 0.98])
    forwards: dict[str, tuple[nn.Module, torch.optim.Optimizer, Callable[[int], Tensor],
                              list[Batch]]] = {
        "hf": (fam.hf, hf_opt, lambda j: fam.hf(**hf_inputs[j]).loss, fixed),
        "vlp": (fam.vlp, vlp_opt, lambda j: fam.vlp(fixed[j], fam.objectives).loss, fixed),
        "vlp_bucketed": (fam.vlp, vlp_opt,
                         lambda j: fam.vlp(bucketed[j], fam.objectives).loss, bucketed),
    }
    return [Runner(s, p, device, model, opt, fwd, [b.size for b in batches])
            for p in precisions for s, (model, opt, fwd, batches) in forwards.items()]


def pair_flops(runner: Runner) -> float:
    """Forward + backward FLOPs per pair over the runner's batches (matmuls; attention in
    SDPA's math path, which training on CPU takes, counts as its matmuls)."""
    runner.model.train()
    total = 0
    for j in range(len(runner.sizes)):
        counter = FlopCounterMode(display=False)
        with counter:
            runner.forward(j).backward()
        runner.model.zero_grad(set_to_none=True)
        total += counter.get_total_flops()
    return total / sum(runner.sizes)


def run_rounds(runners: list[Runner], args: argparse.Namespace
               ) -> dict[str, list[dict[str, float]]]:
    """Warm up, then ``--rounds`` rounds of ``--steps`` steps per runner, taken in turn step
    by step (order reversed every other round), so load changes hit every runner alike."""
    for runner in runners:
        runner.model.train()
        for j in range(args.warmup):
            runner.step(j % len(runner.sizes))
    rounds: dict[str, list[dict[str, float]]] = {r.key: [] for r in runners}
    for r in range(args.rounds):
        order = runners if r % 2 == 0 else runners[::-1]
        seconds = dict.fromkeys(rounds, 0.0)
        samples = dict.fromkeys(rounds, 0)
        for s in range(args.steps):
            for runner in order:
                j = (r * args.steps + s) % len(runner.sizes)  # batches cycle across rounds
                seconds[runner.key] += runner.step(j)
                samples[runner.key] += runner.sizes[j]
        for key in rounds:
            rounds[key].append({"seconds": seconds[key], "samples": samples[key],
                                "steps": args.steps})
        print(f"   round {r + 1}/{args.rounds}: "
              + ", ".join(f"{k} {samples[k] / seconds[k]:.1f}/s" for k in rounds))
    return rounds


def gemm_flops_per_s(m: int, k: int, n: int, precision: str, device: torch.device,
                     reps: int = 5) -> float:
    """FLOP/s of ``(m, k) @ (k, n)`` in ``precision`` on ``device``, best of ``reps``."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(m, k, dtype=dtype, device=device)
    b = torch.randn(k, n, dtype=dtype, device=device)
    for _ in range(3 if device.type == "cuda" else 1):  # warm-up
        a @ b
    best = min(_seconds(lambda: a @ b, device) for _ in range(reps))
    return 2.0 * m * k * n / best


def _seconds(fn: Callable[[], Any], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def summarize(rounds: list[dict[str, float]]) -> dict[str, Any]:
    """Median samples/s over rounds (min, max beside it) and median step time."""
    per_s = [r["samples"] / r["seconds"] for r in rounds]
    return {"samples_per_s": statistics.median(per_s), "samples_per_s_min": min(per_s),
            "samples_per_s_max": max(per_s),
            "step_ms": 1e3 * statistics.median(r["seconds"] / r["steps"] for r in rounds),
            "rounds": rounds}


def profile_steps(runners: list[Runner], rows: int) -> None:
    """``--profile``: the operators of one step on each of a runner's batches, by self CPU
    time."""
    for runner in runners:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if runner.device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            for j in range(len(runner.sizes)):
                runner.step(j)
        print(f"\n-- profile {runner.key} ({len(runner.sizes)} steps, one per batch)")
        sort = "self_cuda_time_total" if runner.device.type == "cuda" else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=sort, row_limit=rows))


# --------------------------------------------------------------------------- the benchmark


def family_batches(fam: Family, corpus: Corpus, tokenizer: Tokenizer, timed: Timed,
                   args: argparse.Namespace) -> list[Batch]:
    """The full-size batches of ``timed`` with the family's masking and location features."""
    store = RandomRegions(corpus.region_counts, args.feature_dim, args.num_classes, args.seed)
    collator = collator_for(tokenizer, corpus, store, fam.loc_dim, args)
    batches = [collate(corpus, collator, store, idx, fam.plan, seed)
               for idx, seed in zip(timed.indices, timed.seeds, strict=True)]
    for b, shape in zip(batches, timed.shapes, strict=True):
        assert b.region_feats is not None
        if (b.size, b.input_ids.shape[1], b.region_feats.shape[1]) != shape:
            raise RuntimeError(f"a full-size batch came out {b.input_ids.shape} "
                               f"{b.region_feats.shape}, its 1-d twin {shape}")
    return batches


def run_family(name: str, data: dict[str, Any], args: argparse.Namespace,
               tmp: Path) -> dict[str, Any]:
    """Build, check the losses, time; the family's part of the JSON."""
    corpus, tokenizer = data["corpus"], data["tokenizer"]
    fam = BUILDERS[name](args, tokenizer.vocab_size, tmp)
    fam.hf.to(args.device)
    fam.vlp.to(args.device)
    print(f"\n== {name}: {fam.description}")
    # moved once, outside the timing (each keeps the mask counts it made on the host)
    fixed = [b.to(args.device) for b in family_batches(fam, corpus, tokenizer, data["fixed"],
                                                         args)]
    bucketed = [b.to(args.device) for b in family_batches(fam, corpus, tokenizer,
                                                            data["bucketed"], args)]
    check = check_losses(fam, fixed[0])
    print_check(fam, check)
    where = (torch.cuda.get_device_name(args.device) if args.device.type == "cuda"
             else f"{torch.get_num_threads()} torch thread(s)")
    print(f"\n-- timing {name}: {args.warmup} warm-up + {args.rounds} rounds × {args.steps} "
          f"steps per cell, {where}")
    runners = make_runners(fam, fixed, bucketed, args.precisions, args.device)
    flops = {r.setting: pair_flops(r) for r in runners if r.precision == runners[0].precision}
    print("   GFLOP per pair (forward + backward): "
          + ", ".join(f"{k} {v / 1e9:.2f}" for k, v in flops.items()))
    rounds = run_rounds(runners, args)
    if args.profile:
        profile_steps(runners, args.profile)
    results = {p: {s: summarize(rounds[f"{s}/{p}"]) for s in SETTINGS} for p in args.precisions}
    # useful work: what vlp computes of a batch (real positions, labelled logits), whoever
    # runs it; against a GEMM of the step's shape, (real positions, D) @ (D, MLP)
    real = round(float(np.mean([b.text_mask.sum() + b.region_mask.sum() for b in fixed
                                if b.region_mask is not None])))
    gemm = {p: gemm_flops_per_s(real, args.hidden_size, args.intermediate_size, p, args.device)
            for p in args.precisions}
    peak = data["peak"]
    for p, res in results.items():
        for s in SETTINGS:
            useful = flops["vlp_bucketed" if s == "vlp_bucketed" else "vlp"]
            res[s]["useful_flop_per_s"] = useful * res[s]["samples_per_s"]
            res[s]["useful_over_gemm"] = res[s]["useful_flop_per_s"] / gemm[p]
            if peak:
                res[s]["mfu"] = res[s]["useful_flop_per_s"] / peak[p]
    fam.hf.cpu()  # the next family has the device to itself
    fam.vlp.cpu()
    return {"description": fam.description, "objectives": fam.objectives, "gemm_flop_per_s": gemm,
            "gemm_shape": [real, args.hidden_size, args.intermediate_size],
            "parameters": {"hf": sum(p.numel() for p in fam.hf.parameters()),
                           "vlp": sum(p.numel() for p in fam.vlp.parameters())},
            "loss_check": check, "flops_per_pair": flops, "results": results}


def print_table(name: str, result: dict[str, Any], data: dict[str, Any]) -> None:
    """HF and vlp samples/s side by side, with vlp/HF ratios, per precision."""
    print(f"\n== {name}: training samples/s (median round; forward + backward + AdamW)")
    print(f"   {describe(data['fixed'])}")
    print(f"   {describe(data['bucketed'])}; token budget {data['budget']:,}")
    header = ["precision", "HF", "vlp (same batches)", "vlp (bucketed)", "vlp/HF",
              "vlp bucketed/HF", "step ms HF / vlp / bucketed"]
    flops = result["flops_per_pair"]
    rows = []
    for precision, res in result["results"].items():
        hf, vlp, buck = (res[s]["samples_per_s"] for s in SETTINGS)
        ms = " / ".join(f"{res[s]['step_ms']:.0f}" for s in SETTINGS)
        rows.append([precision, f"{hf:.1f}", f"{vlp:.1f}", f"{buck:.1f}", ratio(vlp, hf),
                     ratio(buck, hf), ms])
    print(format_table(header, rows))
    m, k, n = result["gemm_shape"]
    for precision, res in result["results"].items():
        print(f"   useful {precision} GFLOP/s (vlp's work on the batch, whoever runs it) "
              f"HF / vlp / bucketed: "
              + " / ".join(f"{res[s]['useful_flop_per_s'] / 1e9:.1f}" for s in SETTINGS)
              + f"; of a ({m}, {k}) @ ({k}, {n}) GEMM's "
              f"{result['gemm_flop_per_s'][precision] / 1e9:.1f}: "
              + " / ".join(f"{100 * res[s]['useful_over_gemm']:.0f} %" for s in SETTINGS))
        if "mfu" in res["hf"]:
            print(f"   MFU {precision} (useful FLOP/s over the measured {precision} peak, "
                  f"{data['peak'][precision] / 1e12:.0f} TFLOP/s) HF / vlp / bucketed: "
                  + " / ".join(f"{100 * res[s]['mfu']:.1f} %" for s in SETTINGS))
    hf, vlp, buck = (flops[s] / 1e9 for s in SETTINGS)
    print(f"   GFLOP per pair, forward + backward (counted): HF {hf:.2f}, vlp {vlp:.2f} (same "
          f"batches), {buck:.2f} (bucketed): HF computes {ratio(hf, vlp)} / {ratio(hf, buck)}")


def prepare_data(args: argparse.Namespace) -> dict[str, Any]:
    """Tokenizer, corpus, the two batchings' timed batches and the matched budget."""
    tokenizer = Tokenizer.from_vocab(args.vocab)
    corpus = load_corpus(args, tokenizer)
    fixed, bucketed, budget = timed_batches(corpus, tokenizer, args)
    negatives = ("an image of the pool with the positive's region count, as the trainer"
                 if args.negatives == "pool" else "another pair's image in the same batch")
    print(f"data: {corpus.description}; ITM negatives: {negatives}")
    print(f"   {describe(fixed)}")
    print(f"   {describe(bucketed)}; token budget {budget:,} (as many batches as fixed-size), "
          f"bucket size {args.bucket_size}")
    peak = {}
    if args.device.type == "cuda":  # the GPU's own peak, as MFU is quoted against
        n = args.peak_size
        peak = {p: max(gemm_flops_per_s(n, n, n, p, args.device, reps=10) for _ in range(2))
                for p in args.precisions}
        print("   measured peak, an " + f"{n}×{n}×{n} matrix product: "
              + ", ".join(f"{p} {v / 1e12:.0f} TFLOP/s" for p, v in peak.items()))
    return {"tokenizer": tokenizer, "corpus": corpus, "fixed": fixed, "bucketed": bucketed,
            "budget": budget, "peak": peak}


def batching_json(t: Timed) -> dict[str, Any]:
    """A batching's timed shapes and epoch figures for the JSON."""
    return {"shapes_B_L_R": [list(s) for s in t.shapes], "epoch": t.epoch}


def parse_args() -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", choices=list(BUILDERS), default=list(BUILDERS))
    p.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=PRECISIONS)
    p.add_argument("--steps", type=int, default=4, help="timed steps per cell and round")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per cell")
    p.add_argument("--batches", type=int, default=4, help="distinct batches per batching")
    p.add_argument("--batch-size", type=int, default=16, help="fixed batch size B")
    p.add_argument("--bucket-size", type=int, default=DataConfig.bucket_size,
                   help="pairs sorted together by the token-budget sampler (the trainer's)")
    p.add_argument("--pool", type=int, default=4096, help="captions in the epoch sampled")
    # base size, as people train and import (the small setting: --hidden-size 256
    # --num-heads 4 --intermediate-size 1024 --layers 4 --lxmert-layers 4 2 2)
    p.add_argument("--hidden-size", type=int, default=768)
    p.add_argument("--num-heads", type=int, default=12)
    p.add_argument("--intermediate-size", type=int, default=3072)
    p.add_argument("--layers", type=int, default=12, help="VisualBERT layers")
    p.add_argument("--lxmert-layers", type=int, nargs=3, default=[9, 5, 5],
                   metavar=("L", "R", "X"), help="LXMERT language, object, cross layers")
    p.add_argument("--feature-dim", type=int, default=2048)
    p.add_argument("--num-classes", type=int, default=1600, help="LXMERT object labels")
    p.add_argument("--captions", type=Path, default=KARPATHY_TEST)
    p.add_argument("--vocab", type=Path, default=None,
                   help="a BERT vocab.txt (default: the packaged MiniLM's, bert-base-uncased)")
    p.add_argument("--max-text-len", type=int, default=40)
    p.add_argument("--min-regions", type=int, default=10)
    p.add_argument("--max-regions", type=int, default=100)
    p.add_argument("--profile", type=int, default=0, metavar="ROWS",
                   help="after timing, print the top ROWS operators of one step per cell")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared machine a second OpenMP thread "
                        "spins at every barrier while the first waits for a core; 0: torch's "
                        "default)")
    p.add_argument("--negatives", choices=["pool", "batch"], default="pool",
                   help="ITM negatives' images: an image of the pool with the positive's "
                        "region count (the trainer's way) or one of the same batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", type=torch.device, default=torch.device("cpu"),
                   help="cpu, or cuda (timed between synchronisations; adds MFU)")
    p.add_argument("--peak-size", type=int, default=8192,
                   help="side of the square matrix product that measures a GPU's peak")
    p.add_argument("--out", type=Path, default=None,
                   help="results JSON (default: benchmarks/results/vs_hf_DEVICE.json)")
    args = p.parse_args()
    if args.out is None:
        args.out = RESULTS / f"vs_hf_{args.device.type}.json"
    if args.device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device here")
    return args


def main() -> None:
    """Check the losses, time every cell, print the tables, write the JSON."""
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.vocab_label = str(args.vocab)
    if args.vocab is None:
        try:
            args.vocab = resolve_source("minilm") / "vocab.txt"
        except VlpError as e:
            raise SystemExit(f"--vocab: {e}") from e
        args.vocab_label = "the packaged MiniLM's BERT vocab"
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    data = prepare_data(args)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            results[name] = run_family(name, data, args, Path(tmp))
    for name, result in results.items():
        print_table(name, result, data)
    write_results(args.out, {
        "benchmark": "vs_hf", "device": (torch.cuda.get_device_name(args.device)
                                         if args.device.type == "cuda" else "cpu"),
        "peak_flop_per_s": data["peak"], "transformers": transformers.__version__,
        "data": data["corpus"].description, "batch_size": args.batch_size,
        "token_budget": data["budget"], "bucket_size": args.bucket_size,
        "itm_negatives": args.negatives,
        "fixed": batching_json(data["fixed"]), "bucketed": batching_json(data["bucketed"]),
        "steps_per_round": args.steps, "rounds": args.rounds, "warmup": args.warmup,
        "families": results})


if __name__ == "__main__":
    main()
