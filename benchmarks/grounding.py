"""Does a pre-trained model read the image? Masked colour and shape words, true image vs another.

For each pre-training run on the built-in world, the held-out MLM batches (the run's own
eval split, masks and seed) are scored twice: with each caption's own image, and with
the image (regions or pixels) of the next example (``roll(1)``: another image of the split).
Only masked positions whose target is a colour or shape word count: those words are the
ones a caption cannot predict from its other words alone. A model that grounds loses
accuracy when the image is swapped; one that learned MLM from text alone does not.

Usage: ``.venv/bin/python benchmarks/grounding.py RUN [RUN ...] [--out FILE]``
(``RUN``: a directory written by ``vlp pretrain``, e.g. ``demo/pretrain_uniter``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from _common import RESULTS, format_table, ratio, write_results
from vlp.config import load_config
from vlp.data.batch import Batch
from vlp.train.checkpoint import list_checkpoints, load_weights
from vlp.train.config import PretrainConfig
from vlp.train.pretrain import HeldOutLosses, pretraining_parts
from vlp.train.trainer import scoring
from vlp.world.vocab import COLOURS, SHAPES


def other_image(batch: Batch) -> Batch:
    """Each example with the next example's image (its regions, or its pixels)."""
    rows = torch.arange(batch.size)
    return batch.pair(rows, rows.roll(1))


def probe(run: Path) -> dict[str, float]:
    """Accuracy on masked colour and shape words with the true and another image."""
    cfg = load_config(PretrainConfig, run / "config.yaml")
    parts, env = pretraining_parts(cfg)
    checkpoints = list_checkpoints(run / "checkpoints")
    if not checkpoints:
        raise SystemExit(f"{run}: no checkpoint under checkpoints/ (is it a pre-training run?)")
    model = parts.model.to(env.device)
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
    return {"words": total, **{name: c / max(total, 1) for name, c in correct.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=RESULTS / "grounding_cpu.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    results = {str(run): probe(run) for run in args.runs}
    rows = [[run, f"{r['words']:.0f}", f"{r['true']:.3f}", f"{r['other']:.3f}",
             ratio(r["true"], r["other"])] for run, r in results.items()]
    print("\nmasked colour and shape words, held-out: accuracy with the true image vs another")
    print(format_table(["run", "words", "true image", "other image", "true/other"], rows))
    write_results(args.out, {"runs": results})


if __name__ == "__main__":
    main()
