"""Padded encoder positions: fixed-size random batches vs dynamic batching under a token budget.

Text and regions are padded separately to their batch maxima before they are concatenated,
so a batch computes ``B × (L_max + R_max)`` positions; attention costs about
``B × (L_max + R_max)²``. Two corpora:

(a) the real COCO Karpathy test captions (WordPiece, ≤ 40 tokens) with a detector-like
    region count per image drawn uniformly from 10..100;
(b) the built-in world (``--world DIR``): its captions, vocabulary and region store.

Token-budget batches are cut from buckets of ``--bucket-size`` examples and from the whole
epoch (``data.bucket_size: 0``). Each batching is also shown after ITM negatives: about
half the pairs take another image of the pool, of any region count or (as the trainer
draws them) of the same count.

Usage: ``.venv/bin/python benchmarks/padding.py [--batch-size 64] [--world DIR]``
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _common import (
    KARPATHY_TEST,
    RESULTS,
    caption_tokenizer,
    format_table,
    load_captions,
    ratio,
    token_lengths,
    write_results,
)
from vlp.data.batching import (
    BatchFn,
    ResumableBatchSampler,
    fixed_size_batches,
    padding_fraction,
    token_budget_batches,
)
from vlp.data.pretrain import ImagePool


@dataclass
class Corpus:
    """Per-pair text and region lengths of one data set."""

    name: str
    description: str
    text_lengths: np.ndarray  # (N,) tokens incl. [CLS]/[SEP]
    region_counts: np.ndarray  # (N,) regions of the pair's image
    image_ids: np.ndarray  # (N,) the pair's image

    @property
    def lengths(self) -> np.ndarray:
        """(N, 2) text tokens and regions per pair (padded separately by the collator)."""
        return np.stack([self.text_lengths, self.region_counts], axis=1)


def karpathy_corpus(args: argparse.Namespace) -> Corpus:
    """Real caption lengths; one uniform 10..100 region count per image, shared by its captions."""
    per_image = load_captions(args.captions)
    texts = [c for caps in per_image for c in caps]
    tokenizer = caption_tokenizer(texts, args.vocab)
    text = token_lengths(tokenizer, texts, args.max_text_len)
    rng = np.random.default_rng(args.seed)
    counts = rng.integers(args.min_regions, args.max_regions + 1, size=len(per_image))
    regions = np.repeat(counts, [len(caps) for caps in per_image])
    vocab = f"vocab {args.vocab}" if args.vocab else f"WordPiece {tokenizer.vocab_size} trained"
    desc = (f"{len(texts):,} real captions of {len(per_image):,} images ({args.captions.name}; "
            f"{vocab}, ≤{args.max_text_len} tokens); regions uniform "
            f"{args.min_regions}..{args.max_regions} per image (seed {args.seed})")
    images = np.repeat(np.arange(len(per_image)), [len(caps) for caps in per_image])
    return Corpus("karpathy_test", desc, text, regions.astype(np.int64), images)


def world_corpus(args: argparse.Namespace) -> Corpus | None:
    """The built-in world's training pairs with their stored region counts, or None."""
    try:
        from vlp.data.features import RegionStore
    except ImportError:
        print("note: vlp.data.features is not available; skipping the world corpus")
        return None
    from vlp.data.formats.karpathy import read_karpathy
    from vlp.data.tokenizer import Tokenizer

    world: Path = args.world
    images = [im for im in read_karpathy(world / "annotations" / "dataset_world.json")
              if im.split in args.world_splits]
    texts = [c for im in images for c in im.captions]
    text = token_lengths(Tokenizer.from_vocab(world / "vocab.txt"), texts, args.max_text_len)
    stored = RegionStore.open(world / "features").region_counts()
    regions = np.array([min(stored[im.image_id], args.max_regions)
                        for im in images for _ in im.captions], dtype=np.int64)
    desc = (f"{len(texts):,} world captions of {len(images):,} images (splits "
            f"{','.join(args.world_splits)}; {world}); stored region counts, ≤{args.max_regions}")
    ids = np.array([im.image_id for im in images for _ in im.captions], dtype=np.int64)
    return Corpus("world", desc, text, regions, ids)


def epoch_batches(n: int, make: BatchFn, seed: int) -> list[list[int]]:
    """One shuffled epoch of index batches, exactly as the trainer's sampler draws them."""
    return ResumableBatchSampler(n, make, seed).epoch_batches(0)


def match_budget(lengths: np.ndarray, target_batches: int, bucket_size: int, seed: int) -> int:
    """Smallest token budget giving at most ``target_batches`` batches (bisection)."""
    longest = int(lengths.sum(axis=1).max())
    lo, hi = longest, longest * len(lengths)
    while lo < hi:
        mid = (lo + hi) // 2
        make = token_budget_batches(lengths, mid, bucket_size)
        if len(epoch_batches(len(lengths), make, seed)) <= target_batches:
            hi = mid
        else:
            lo = mid + 1
    return lo


def choose_budget(corpus: Corpus, args: argparse.Namespace) -> int:
    """``--budget``: ``match`` (as many batches as fixed-size), ``mean`` (B × mean length), or N."""
    if args.budget == "match":
        target = -(-len(corpus.lengths) // args.batch_size)
        return match_budget(corpus.lengths, target, args.bucket_size, args.seed)
    if args.budget == "mean":
        return round(args.batch_size * float(corpus.lengths.sum(axis=1).mean()))
    return int(args.budget)


def batch_stats(batches: list[list[int]], corpus: Corpus) -> dict[str, float]:
    """Padding and cost of one way of batching ``corpus``."""
    text, regions = corpus.text_lengths, corpus.region_counts
    sizes = np.array([len(b) for b in batches])
    l_max = np.array([text[b].max() for b in batches])
    r_max = np.array([regions[b].max() for b in batches])
    computed = int((sizes * (l_max + r_max)).sum())
    real = int(text.sum() + regions.sum())
    return {
        "batches": len(batches),
        "mean_batch_size": float(sizes.mean()),
        "max_batch_size": int(sizes.max()),
        "pad_fraction_text": padding_fraction(batches, text),
        "pad_fraction_regions": padding_fraction(batches, regions),
        "pad_fraction_total": padding_fraction(batches, text, regions),
        "padded_per_real": (computed - real) / real,
        "positions_computed": computed,
        "positions_real": real,
        "attention_cost": float((sizes * (l_max + r_max).astype(np.float64) ** 2).sum()),
    }


def with_negatives(batches: list[list[int]], corpus: Corpus, matched: bool, seed: int
                   ) -> tuple[list[list[int]], Corpus]:
    """The batches as the collator fills them for ITM: about half the pairs of each take
    another image of the pool (vlp's ``ImagePool``: of the same region count with
    ``matched``, as the trainer draws them; else any), and with it its region count."""
    counts = dict(zip(corpus.image_ids.tolist(), corpus.region_counts.tolist(), strict=True))
    pool = ImagePool(list(counts), counts if matched else None)
    gen = torch.Generator().manual_seed(seed)
    order = [i for b in batches for i in b]
    regions = corpus.region_counts[order].copy()
    negative = (torch.rand(len(order), generator=gen) < 0.5).tolist()
    for row, (i, neg) in enumerate(zip(order, negative, strict=True)):
        if neg:
            other = pool.sample(int(corpus.image_ids[i]), gen)
            regions[row] = counts[other] if other is not None else regions[row]
    cuts = np.cumsum([0] + [len(b) for b in batches])
    rows = [list(range(a, b)) for a, b in itertools.pairwise(cuts.tolist())]
    shown = Corpus(corpus.name, corpus.description, corpus.text_lengths[order], regions,
                   corpus.image_ids[order])
    return rows, shown


def compare(corpus: Corpus, args: argparse.Namespace) -> dict[str, Any]:
    """Fixed-size vs token-budget batches of one corpus (buckets of ``--bucket-size`` and
    the whole epoch), before and after ITM negatives."""
    n = len(corpus.lengths)
    budget = choose_budget(corpus, args)
    settings = {"fixed": epoch_batches(n, fixed_size_batches(args.batch_size), args.seed)}
    for bucket in (args.bucket_size, 0):
        settings[f"dynamic_{bucket}"] = epoch_batches(
            n, token_budget_batches(corpus.lengths, budget, bucket), args.seed)
    stats = {name: batch_stats(b, corpus) for name, b in settings.items()}
    for name, b in settings.items():
        for matched in (False, True):
            stats[f"{name}+{'matched' if matched else 'any'}_negatives"] = batch_stats(
                *with_negatives(b, corpus, matched, args.seed))
    return {
        "corpus": corpus.name,
        "description": corpus.description,
        "pairs": n,
        "mean_text_tokens": float(corpus.text_lengths.mean()),
        "mean_regions": float(corpus.region_counts.mean()),
        "batch_size": args.batch_size,
        "token_budget": budget,
        "bucket_size": args.bucket_size,
        "settings": stats,
    }


ROWS = [  # (label, key, format); "ratio" rows also print fixed / dynamic
    ("batches", "batches", "{:,}"),
    ("mean batch size", "mean_batch_size", "{:.1f}"),
    ("max batch size", "max_batch_size", "{:,}"),
    ("padded fraction: text", "pad_fraction_text", "{:.3f}"),
    ("padded fraction: regions", "pad_fraction_regions", "{:.3f}"),
    ("padded fraction: total", "pad_fraction_total", "{:.3f}"),
    ("padded positions per real position", "padded_per_real", "{:.3f}"),
    ("positions computed", "positions_computed", "{:,}"),
    ("attention cost Σ B·(L+R)²", "attention_cost", "{:.3e}"),
]
RATIO_KEYS = {"batches", "padded_per_real", "positions_computed", "attention_cost"}


def print_comparison(result: dict[str, Any]) -> None:
    """The side-by-side tables of one corpus: the batchings, then their padded share
    after ITM negatives."""
    stats = result["settings"]
    print(f"\n== {result['corpus']}: {result['description']}")
    print(f"   mean {result['mean_text_tokens']:.1f} text tokens + "
          f"{result['mean_regions']:.1f} regions per pair; token budget "
          f"{result['token_budget']:,} (as many batches as fixed B={result['batch_size']})")
    names = ["fixed", f"dynamic_{result['bucket_size']}", "dynamic_0"]
    header = ["", f"fixed B={result['batch_size']}", f"bucket {result['bucket_size']}",
              "bucket 0 (epoch)", "fixed / epoch"]
    rows = []
    for label, key, fmt in ROWS:
        a, b, c = (stats[n][key] for n in names)
        rows.append([label, fmt.format(a), fmt.format(b), fmt.format(c),
                     ratio(a, c) if key in RATIO_KEYS else ""])
    for kind in ("any", "matched"):
        rows.append([f"padded fraction, ITM negatives of {kind} count",
                     *(f"{stats[f'{n}+{kind}_negatives']['pad_fraction_total']:.3f}"
                       for n in names), ""])
    print(format_table(header, rows))


def parse_args() -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=64, help="fixed batch size B")
    p.add_argument("--budget", default="match",
                   help="token budget: 'match' (same number of batches as fixed), "
                        "'mean' (B × mean length) or an integer")
    p.add_argument("--bucket-size", type=int, default=4096, help="examples sorted together")
    p.add_argument("--captions", type=Path, default=KARPATHY_TEST)
    p.add_argument("--vocab", type=Path, default=None,
                   help="a BERT vocab.txt (default: WordPiece 8000 trained on the captions)")
    p.add_argument("--max-text-len", type=int, default=40)
    p.add_argument("--min-regions", type=int, default=10)
    p.add_argument("--max-regions", type=int, default=100)
    p.add_argument("--world", type=Path, default=None,
                   help="a built-in world directory (annotations/, vocab.txt, features/)")
    p.add_argument("--world-splits", nargs="+", default=["train"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS / "padding_cpu.json")
    return p.parse_args()


def main() -> None:
    """Compare both batchings on each corpus, print the tables, write the JSON."""
    args = parse_args()
    corpora = [karpathy_corpus(args)]
    if args.world is None:
        print("note: no --world DIR given; skipping the built-in world corpus")
    else:
        world = world_corpus(args)
        corpora += [world] if world is not None else []
    results = []
    for corpus in corpora:
        results.append(compare(corpus, args))
        print_comparison(results[-1])
    write_results(args.out, {"benchmark": "padding", "results": results})


if __name__ == "__main__":
    main()
