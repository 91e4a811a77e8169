"""Padded encoder positions: fixed-size random batches vs dynamic batching under a token budget.

Text and regions are padded separately to their batch maxima before they are concatenated,
so a batch computes ``B × (L_max + R_max)`` positions; attention costs about
``B × (L_max + R_max)²``. Two corpora:

(a) the real COCO Karpathy test captions (WordPiece, ≤ 40 tokens) with a detector-like
    region count per image drawn uniformly from 10..100;
(b) the built-in world (``--world DIR``): its captions, vocabulary and region store.

Usage: ``.venv/bin/python benchmarks/padding.py [--batch-size 64] [--world DIR]``
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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


@dataclass
class Corpus:
    """Per-pair text and region lengths of one data set."""

    name: str
    description: str
    text_lengths: np.ndarray  # (N,) tokens incl. [CLS]/[SEP]
    region_counts: np.ndarray  # (N,) regions of the pair's image

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
    return Corpus("karpathy_test", desc, text, regions.astype(np.int64))


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
    return Corpus("world", desc, text, regions)


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


def compare(corpus: Corpus, args: argparse.Namespace) -> dict[str, Any]:
    """Fixed-size vs token-budget batches of one corpus."""
    n = len(corpus.lengths)
    budget = choose_budget(corpus, args)
    fixed = epoch_batches(n, fixed_size_batches(args.batch_size), args.seed)
    dynamic = epoch_batches(n, token_budget_batches(corpus.lengths, budget, args.bucket_size),
                            args.seed)
    return {
        "corpus": corpus.name,
        "description": corpus.description,
        "pairs": n,
        "mean_text_tokens": float(corpus.text_lengths.mean()),
        "mean_regions": float(corpus.region_counts.mean()),
        "batch_size": args.batch_size,
        "token_budget": budget,
        "bucket_size": args.bucket_size,
        "fixed": batch_stats(fixed, corpus),
        "dynamic": batch_stats(dynamic, corpus),
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
    """The side-by-side table of one corpus."""
    fixed, dynamic = result["fixed"], result["dynamic"]
    print(f"\n== {result['corpus']}: {result['description']}")
    print(f"   mean {result['mean_text_tokens']:.1f} text tokens + "
          f"{result['mean_regions']:.1f} regions per pair; bucket size {result['bucket_size']}")
    header = ["", f"fixed B={result['batch_size']}",
              f"dynamic ≤{result['token_budget']:,} pos", "fixed / dynamic"]
    rows = []
    for label, key, fmt in ROWS:
        a, b = fixed[key], dynamic[key]
        rows.append([label, fmt.format(a), fmt.format(b),
                     ratio(a, b) if key in RATIO_KEYS else ""])
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
