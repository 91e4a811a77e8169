"""Does a pre-trained model read the image? Three probes on a run's held-out batches.

For each pre-training run on the built-in world (its own eval split, masks and seed):

- **Masked colour and shape words**, true image vs another: the held-out MLM batches are
  scored with each caption's own image and with the image (regions or pixels) of the next
  example (``roll(1)``: another image of the split). Only masked positions whose target is a
  colour or shape word count: the words a caption's other words do not give away. A model
  that grounds loses accuracy when the image is swapped; one that learned MLM from text
  alone does not.
- **Where the joint attention goes** (single-stream models): per layer, the attention mass
  that text queries (and the first token, [CLS], alone) put on image keys, beside the image's
  share of the keys (what uniform attention would give), on the matched pairs of the
  held-out ITM batches.
- **What the pooled state carries of the image**: 1 - cos between a pair's pooled state
  (what ITM and the task heads read) and the same text's with another image, beside the
  same with another text and the same image (matched pairs only). A pooled state that
  ignores the image barely moves when the image changes.

Usage: ``.venv/bin/python benchmarks/grounding.py RUN [RUN ...] [--untrained] [--out FILE]``
(``RUN``: a directory written by ``vlp pretrain``, e.g. ``demo/pretrain_uniter``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from _common import RESULTS, format_table, ratio, write_results
from vlp.config import load_config
from vlp.data.batch import Batch
from vlp.layers.attention import MultiHeadAttention
from vlp.layers.packing import Packing
from vlp.train.checkpoint import list_checkpoints, load_weights
from vlp.train.config import PretrainConfig
from vlp.train.pretrain import HeldOutLosses, pretraining_parts
from vlp.train.trainer import scoring
from vlp.world.vocab import COLOURS, SHAPES


def other_image(batch: Batch) -> Batch:
    """Each example with the next example's image (its regions, or its pixels)."""
    rows = torch.arange(batch.size)
    return batch.pair(rows, rows.roll(1))


def other_text(batch: Batch) -> Batch:
    """Each example with the next example's text and its own image."""
    rows = torch.arange(batch.size)
    return batch.pair(rows.roll(1), rows)


class ImageAttention:
    """Records, for every self-attention module of a single-stream encoder, the mean
    attention mass of text queries (and of the first token) on image keys, on batches
    whose first ``n_text`` positions are text and whose text rows are ``text_mask`` (rows
    outside ``rows``, the mismatched pairs, count for nothing)."""

    def __init__(self, layers: list[MultiHeadAttention]) -> None:
        self.text = [0.0] * len(layers)
        self.first = [0.0] * len(layers)
        self.active = False
        self.rows = torch.ones(0, dtype=torch.bool)
        self.n_text = 0
        self.text_mask = torch.ones(0, 0, dtype=torch.bool)
        self.handles = [m.register_forward_pre_hook(self._hook(i), with_kwargs=True)
                        for i, m in enumerate(layers)]

    def _hook(self, i: int):  # type: ignore[no-untyped-def]
        def hook(module: MultiHeadAttention, args: tuple, kwargs: dict) -> None:
            if not self.active:
                return
            x, key_mask, _, packing = (list(args) + [None] * 4)[:4]
            packing = kwargs.get("packing", packing)
            key_mask = kwargs.get("key_mask", key_mask)
            qkv = module.qkv(x)
            if isinstance(packing, Packing):
                qkv, key_mask = packing.unpack(qkv), packing.mask
            q, k, _ = (module._heads(t) for t in qkv.chunk(3, dim=-1))
            scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B, H, N, M)
            if key_mask is not None:
                scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
            on_image = scores.softmax(-1, dtype=torch.float32)[..., self.n_text:].sum(-1)
            on_image = on_image.mean(1)  # (B, N), over heads
            text = self.text_mask.float()
            per_row = (on_image[:, :self.n_text] * text).sum(1) / text.sum(1)
            self.text[i] += float(per_row[self.rows].sum())
            self.first[i] += float(on_image[self.rows, 0].sum())
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def probe(run: Path, untrained: bool = False) -> dict[str, object]:
    """The three probes of the module docstring for one pre-training run (``untrained``:
    for its model as initialised, before any step)."""
    cfg = load_config(PretrainConfig, run / "config.yaml", recorded=True)
    parts, env = pretraining_parts(cfg)
    checkpoints = list_checkpoints(run / "checkpoints")
    if not checkpoints:
        raise SystemExit(f"{run}: no checkpoint under checkpoints/ (is it a pre-training run?)")
    model = parts.model.to(env.device)
    if not untrained:
        load_weights(model, checkpoints[-1])
    words = [parts.data.tokenizer.backend.token_to_id(w) for w in (*COLOURS, *SHAPES)]
    targets = torch.tensor(sorted({w for w in words if w is not None}), device=env.device)
    mlm = model.objective("mlm")
    assert isinstance(parts.evaluate, HeldOutLosses)
    correct = {"true": 0, "other": 0}
    total = 0
    with scoring(model, env.device, parts.cfg.train.precision):
        for key, batch in parts.evaluate.batches_on_device():
            if key.objectives != ("mlm",):
                continue
            assert batch.mlm_labels is not None
            where = torch.isin(batch.mlm_labels, targets)  # -100 (unmasked) is never a target
            total += int(where.sum())
            for name, b in (("true", batch), ("other", other_image(batch))):
                logits = mlm.head(model.encoder(b).text[where])
                correct[name] += int((logits.argmax(-1) == batch.mlm_labels[where]).sum())
        seen = _attention_and_pooled(model.encoder, parts.evaluate)
    return {"words": total, **{name: c / max(total, 1) for name, c in correct.items()}, **seen}


def _attention_and_pooled(encoder: torch.nn.Module, evaluate: HeldOutLosses
                          ) -> dict[str, object]:
    """Attention on the image (single-stream) and the pooled state's change with another
    image and with another text, over the matched pairs of the held-out ITM batches."""
    layers = getattr(getattr(encoder, "encoder", None), "layers", None)
    attention = (ImageAttention([layer.attn for layer in layers])
                 if layers is not None and not hasattr(encoder, "blocks") else None)
    moved = {"image": 0.0, "text": 0.0}
    share = 0.0
    pairs = 0
    with torch.no_grad():
        for key, batch in evaluate.batches_on_device():
            if key.objectives != ("itm",) or batch.itm_labels is None:
                continue
            matched = batch.itm_labels == 1
            if attention is not None:
                attention.n_text, attention.text_mask = batch.text_mask.shape[1], batch.text_mask
                attention.rows, attention.active = matched, True
            out = encoder(batch)
            if attention is not None:
                attention.active = False
            n_image = out.image_mask.float().sum(1)
            share += float((n_image / (n_image + batch.text_mask.float().sum(1)))[matched].sum())
            for name, other in (("image", other_image(batch)), ("text", other_text(batch))):
                cos = torch.cosine_similarity(out.pooled.float(), encoder(other).pooled.float())
                moved[name] += float((1 - cos)[matched].sum())
            pairs += int(matched.sum())
    if attention is not None:
        attention.remove()
    if not pairs:
        return {"itm_pairs": 0}
    result: dict[str, object] = {
        "pooled_moved_other_image": moved["image"] / pairs,
        "pooled_moved_other_text": moved["text"] / pairs, "itm_pairs": pairs}
    if attention is not None:
        result.update(image_share_of_keys=share / pairs,
                      text_to_image=[round(m / pairs, 3) for m in attention.text],
                      first_to_image=[round(m / pairs, 3) for m in attention.first])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--untrained", action="store_true",
                        help="also probe each run's model as initialised (its seed, no step)")
    parser.add_argument("--out", type=Path, default=RESULTS / "grounding_cpu.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    results = {}
    for run in args.runs:
        if args.untrained:
            results[f"{run} (untrained)"] = probe(run, untrained=True)
        results[str(run)] = probe(run)
    rows = [[run, f"{r['words']:.0f}", f"{r['true']:.3f}", f"{r['other']:.3f}",
             ratio(r["true"], r["other"])] for run, r in results.items()]
    print("\nmasked colour and shape words, held-out: accuracy with the true image vs another")
    print(format_table(["run", "words", "true image", "other image", "true/other"], rows))
    rows = [[run, f"{r['pooled_moved_other_image']:.4f}", f"{r['pooled_moved_other_text']:.4f}",
             " ".join(f"{m:.2f}" for m in r.get("text_to_image", [])) or "-",
             " ".join(f"{m:.2f}" for m in r.get("first_to_image", [])) or "-",
             f"{r['image_share_of_keys']:.2f}" if "image_share_of_keys" in r else "-"]
            for run, r in results.items() if r["itm_pairs"]]
    print("\nheld-out matched ITM pairs: the pooled state's 1 - cos with another image / "
          "another text; attention mass on image keys by layer, from text queries and from "
          "the first token, beside the image's share of the keys")
    print(format_table(["run", "other image", "other text", "text → image", "[CLS] → image",
                        "image share"], rows))
    write_results(args.out, {"runs": results})


if __name__ == "__main__":
    main()
